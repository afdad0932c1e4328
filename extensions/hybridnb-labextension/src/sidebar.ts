/**
 * The hybridnb sidebar: Sites, Clusters, Runs, Endpoints, Jobs and Alerts, each a
 * collapsible section that polls its route while it is shown.
 */

import { refreshIcon } from '@jupyterlab/ui-components';
import { Panel } from '@lumino/widgets';

import { ClustersSection } from './clusters';
import { button, h } from './dom';
import { hybridnbIcon } from './icon';
import { JobsSection } from './jobs';
import {
  AlertsSection,
  EndpointsSection,
  RunsSection,
  SitesSection
} from './resources';
import { ISectionContext, Section } from './section';
import { Widget } from '@lumino/widgets';

export class HybridnbSidebar extends Panel {
  constructor(context: ISectionContext) {
    super();
    this.id = 'hybridnb-sidebar';
    this.addClass('hybridnb-sidebar');
    this.title.icon = hybridnbIcon;
    this.title.caption = 'hybridnb: sites, clusters, runs, endpoints, jobs, alerts';
    const header = new Widget({
      node: h(
        'div',
        { class: 'hybridnb-sidebar-header' },
        hybridnbIcon.element({ tag: 'span', className: 'hybridnb-sidebar-logo' }),
        h('h2', {}, 'hybridnb'),
        button({
          action: 'refresh',
          icon: refreshIcon,
          title: 'Refresh every section now',
          onClick: () => void this.refresh()
        })
      )
    });
    this.clusters = new ClustersSection(context);
    this.sites = new SitesSection(context, site => {
      this.clusters.setCollapsed(false);
      this.clusters.startOn(site);
    });
    this.runs = new RunsSection(context);
    this.endpoints = new EndpointsSection(context);
    this.jobs = new JobsSection(context);
    this.alerts = new AlertsSection(context);
    this.sites.refreshed.connect((_, sites) => this.clusters.setSites(sites));
    this.addWidget(header);
    for (const section of this.sections) {
      this.addWidget(section);
    }
    // The start form needs the sites even while the Sites section is collapsed.
    void context.api
      .sites()
      .then(answer => this.clusters.setSites(answer.sites))
      .catch(() => undefined);
  }

  readonly sites: SitesSection;
  readonly clusters: ClustersSection;
  readonly runs: RunsSection;
  readonly endpoints: EndpointsSection;
  readonly jobs: JobsSection;
  readonly alerts: AlertsSection;

  get sections(): Section<unknown>[] {
    return [
      this.sites,
      this.clusters,
      this.runs,
      this.endpoints,
      this.jobs,
      this.alerts
    ] as Section<unknown>[];
  }

  /** Poll every expanded section now. */
  async refresh(): Promise<void> {
    await Promise.all(this.sections.map(s => s.refresh()));
  }

  setInterval(ms: number): void {
    for (const section of this.sections) {
      section.setInterval(ms);
    }
  }
}
