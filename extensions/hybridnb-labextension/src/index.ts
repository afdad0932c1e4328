/**
 * hybridnb in JupyterLab: the sidebar, dashboards in tabs, a notebook as a job, the
 * status-bar item, the launcher's quickstart, and code inserted into the notebook at once.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { HybridnbAPI, errorMessage } from './api';
import { InsertTarget, insertBelow } from './cells';
import { CommandIDs as ClusterCommands } from './clusters';
import { DashboardTab, dashboardTabUrl } from './dashboard';
import { hybridnbIcon } from './icon';
import { RUN_AS_JOB, runAsJob } from './jobs';
import { newQuickstart } from './quickstart';
import { ISectionContext } from './section';
import { HybridnbSidebar } from './sidebar';
import { StatusItem } from './statusbar';

export const PLUGIN_ID = 'hybridnb-labextension:plugin';

export const CommandIDs = {
  insertCell: ClusterCommands.insertCell,
  openDashboard: ClusterCommands.openDashboard,
  runAsJob: RUN_AS_JOB,
  newQuickstart: 'hybridnb:new-quickstart',
  openSidebar: 'hybridnb:open-sidebar',
  refresh: 'hybridnb:refresh'
};

/** The settings (schema/plugin.json), with their defaults. */
interface IConfig {
  pollInterval: number;
  defaultSite: string;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'hybridnb: a sidebar of sites, clusters, runs, endpoints, jobs and alerts.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [
    ISettingRegistry,
    ILauncher,
    IStatusBar,
    ICommandPalette,
    ILayoutRestorer,
    IDefaultFileBrowser
  ],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    settingRegistry: ISettingRegistry | null,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    browser: IDefaultFileBrowser | null
  ) => {
    const config: IConfig = { pollInterval: 5, defaultSite: '' };
    const api = new HybridnbAPI();
    const { commands, shell } = app;
    const context: ISectionContext = {
      api,
      commands,
      interval: () => config.pollInterval * 1000,
      defaultSite: () => config.defaultSite
    };

    const sidebar = new HybridnbSidebar(context);
    shell.add(sidebar, 'left', { rank: 250 });
    restorer?.add(sidebar, sidebar.id);

    const status = statusBar
      ? new StatusItem(api, context.interval(), () =>
          shell.activateById(sidebar.id)
        )
      : null;
    if (statusBar && status) {
      statusBar.registerStatusItem(`${PLUGIN_ID}:status`, {
        item: status,
        align: 'left',
        rank: 50
      });
    }

    new InsertTarget(tracker);

    commands.addCommand(CommandIDs.insertCell, {
      label: 'Insert Code Cell Below',
      caption: 'Insert a code cell holding the given code below the active cell',
      execute: args => {
        const code = String(args.code ?? '');
        const panel = tracker.currentWidget;
        if (!panel) {
          Notification.warning('Open a notebook to insert the code into.', {
            autoClose: 5000
          });
          return false;
        }
        const cellType = args.cellType === 'markdown' ? 'markdown' : 'code';
        insertBelow(panel.content, code, cellType);
        shell.activateById(panel.id);
        return true;
      }
    });

    const tabs = new Map<string, DashboardTab>();
    commands.addCommand(CommandIDs.openDashboard, {
      label: args => `Open Dashboard of ${args.name ?? 'Cluster'}`,
      execute: args => {
        const id = String(args.id ?? '');
        const dashboard = String(args.dashboard ?? '');
        if (!id || !dashboard) {
          Notification.warning('This cluster has no dashboard.', {
            autoClose: 5000
          });
          return;
        }
        let tab = tabs.get(id);
        if (!tab || tab.isDisposed) {
          const url = dashboardTabUrl(dashboard, PageConfig.getBaseUrl());
          tab = new DashboardTab(id, String(args.name ?? id), url);
          tabs.set(id, tab);
          shell.add(tab, 'main');
        }
        shell.activateById(tab.id);
        return tab;
      }
    });

    commands.addCommand(CommandIDs.runAsJob, {
      label: 'Run Notebook as hybridnb Job…',
      caption: 'Run the open notebook as a job, on the site the planner chooses',
      icon: hybridnbIcon,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (!panel) {
          Notification.warning('Open the notebook to run as a job first.', {
            autoClose: 5000
          });
          return null;
        }
        const job = await runAsJob(
          api,
          panel.context.path,
          config.defaultSite,
          async () => {
            // The job runs the file on disk: unsaved edits would be silently left out.
            if (panel.context.model.dirty) {
              await panel.context.save();
            }
          }
        );
        if (job) {
          shell.activateById(sidebar.id);
          sidebar.jobs.follow(job.id);
          Notification.success(`Job ${job.name} queued on ${job.site}.`, {
            autoClose: 5000
          });
        }
        return job;
      }
    });

    commands.addCommand(CommandIDs.newQuickstart, {
      label: args => (args.isLauncher ? 'hybridnb Quickstart' : 'New hybridnb Quickstart Notebook'),
      caption: 'A new notebook from the hybridnb quickstart',
      icon: hybridnbIcon,
      execute: async () => {
        const dir = browser?.model.path ?? '';
        try {
          const path = await newQuickstart(app.serviceManager.contents, dir);
          return commands.execute('docmanager:open', { path });
        } catch (error) {
          Notification.error(`Could not create the quickstart: ${errorMessage(error)}`);
        }
      }
    });

    commands.addCommand(CommandIDs.openSidebar, {
      label: 'Show hybridnb Sidebar',
      execute: () => shell.activateById(sidebar.id)
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh hybridnb Sidebar',
      execute: () => sidebar.refresh()
    });

    if (palette) {
      const category = 'hybridnb';
      for (const command of [
        CommandIDs.runAsJob,
        CommandIDs.newQuickstart,
        CommandIDs.openSidebar,
        CommandIDs.refresh
      ]) {
        palette.addItem({ command, category });
      }
    }
    launcher?.add({
      command: CommandIDs.newQuickstart,
      category: 'Notebook',
      rank: 100
    });
    app.contextMenu.addItem({
      command: CommandIDs.runAsJob,
      selector: '.jp-Notebook',
      rank: 100
    });

    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            const interval = Number(settings.composite.pollInterval);
            config.pollInterval = interval > 0 ? interval : 5;
            config.defaultSite = String(settings.composite.defaultSite ?? '');
            sidebar.setInterval(config.pollInterval * 1000);
            status?.setInterval(config.pollInterval * 1000);
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(error => {
          console.error(`hybridnb: could not load the settings: ${error}`);
        });
    }
  }
};

export default plugin;
