/**
 * Cluster dashboards in main-area tabs: an iframe on the dashboard that the server
 * extension proxies (`hybridnb/dashboard/ID/`), so it carries the user's Jupyter
 * authentication and works behind JupyterHub's `/user/NAME/` prefix.
 */

import { MainAreaWidget } from '@jupyterlab/apputils';
import { IFrame } from '@jupyterlab/ui-components';

import { dashboardUrl } from './format';
import { hybridnbIcon } from './icon';

export class DashboardTab extends MainAreaWidget<IFrame> {
  constructor(readonly clusterId: string, name: string, url: string) {
    // Bokeh's dashboard needs its scripts and same-origin requests (its websocket).
    const content = new IFrame({
      sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups']
    });
    content.url = url;
    super({ content });
    this.id = DashboardTab.idFor(clusterId);
    this.title.label = `Dask: ${name}`;
    this.title.caption = `Dashboard of cluster ${name} (${url})`;
    this.title.icon = hybridnbIcon;
    this.title.closable = true;
    this.addClass('hybridnb-dashboard');
  }

  static idFor(clusterId: string): string {
    return `hybridnb-dashboard-${clusterId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  }
}

/** The tab's URL for a cluster's `dashboard` path (see {@link dashboardUrl}). */
export function dashboardTabUrl(dashboard: string, baseUrl: string): string {
  return dashboardUrl(dashboard, baseUrl);
}
