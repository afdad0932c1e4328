/**
 * The Clusters section: every cluster the user started, wherever it was started, and a
 * form to start one on a site.
 */

import { badge, button, h } from './dom';
import {
  FieldErrors,
  FormBody,
  SubmitDialog,
  field,
  numberInput,
  numberValue
} from './form';
import { connectCode, formatAgo, formatBytes, isActive } from './format';
import type { Cluster, ClusterPatch, Site } from './models';
import { ISectionContext, Section, row, table } from './section';

/** The commands a cluster row triggers (registered in index.ts). */
export const CommandIDs = {
  openDashboard: 'hybridnb:open-dashboard',
  insertCell: 'hybridnb:insert-cell'
};

const STARTED_FROM: { [from: string]: string } = {
  sidebar: 'from the sidebar',
  cli: 'from the CLI',
  python: 'from a kernel'
};

export class ClustersSection extends Section<Cluster> {
  constructor(context: ISectionContext) {
    super({
      id: 'clusters',
      title: 'Clusters',
      context,
      empty: 'No clusters. Start one on a site above, or from a notebook.'
    });
    this._startForm = new StartForm(context, () => this.refresh());
    this.tools.append(this._startForm.node);
  }

  /** The start form's sites (the Sites section shares what it fetched). */
  setSites(sites: readonly Site[]): void {
    this._startForm.setSites(sites);
  }

  /** Preselect a site in the start form and focus it. */
  startOn(site: string): void {
    this._startForm.select(site);
  }

  protected fetch(): Promise<Cluster[]> {
    return this.context.api.clusters().then(answer => answer.clusters);
  }

  protected count(items: readonly Cluster[]): number {
    return items.filter(c => isActive(c.status)).length;
  }

  protected render(clusters: readonly Cluster[]): Node {
    return table(clusters.map(c => this._row(c)));
  }

  private _row(c: Cluster): HTMLTableRowElement {
    const active = isActive(c.status);
    const running = c.status === 'running';
    const why = c.controllable
      ? ''
      : ' (started in a kernel: control it from there)';
    const actions = [
      button({
        action: 'dashboard',
        label: 'Dashboard',
        title: `Open the dashboard of ${c.name} in a tab`,
        disabled: !running || !c.dashboard,
        onClick: () =>
          void this.context.commands.execute(CommandIDs.openDashboard, {
            id: c.id,
            name: c.name,
            dashboard: c.dashboard ?? ''
          })
      }),
      button({
        action: 'connect',
        label: 'Connect',
        title: `Insert code that connects to ${c.name} into the notebook`,
        disabled: !active,
        onClick: () =>
          void this.context.commands.execute(CommandIDs.insertCell, {
            code: connectCode(c.name)
          })
      }),
      button({
        action: 'scale',
        label: 'Scale',
        title: `Change the number of workers of ${c.name}${why}`,
        disabled: !running || !c.controllable,
        onClick: () => void this._scale(c)
      }),
      button({
        action: 'stop',
        label: 'Stop',
        danger: true,
        title: `Stop ${c.name}${why}`,
        disabled: !active || !c.controllable || c.status === 'stopping',
        onClick: () => void this._stop(c)
      })
    ];
    const workers =
      c.workers === null || c.workers === undefined
        ? null
        : `${c.workers} worker${c.workers === 1 ? '' : 's'}`;
    return row({
      id: c.id,
      name: c.name,
      details: [
        c.site,
        c.backend,
        workers,
        c.threads ? `${c.threads} threads` : null,
        c.memory_bytes ? formatBytes(c.memory_bytes) : null,
        STARTED_FROM[c.started_from] ?? c.started_from,
        formatAgo(c.created_at)
      ],
      state: badge(c.status),
      actions: active ? actions : [],
      extra: [
        c.error ? h('div', { class: 'hybridnb-row-error' }, c.error) : null
      ],
      dimmed: !active
    });
  }

  private async _stop(c: Cluster): Promise<void> {
    const ok = await this.confirm(
      `Stop cluster ${c.name}?`,
      `Its scheduler and ${c.workers ?? 'all'} worker(s) stop; ` +
        'work running on it is lost.',
      'Stop'
    );
    if (ok) {
      await this.act(`stopping ${c.name}`, () =>
        this.context.api.stopCluster(c.id)
      );
    }
  }

  private async _scale(c: Cluster): Promise<void> {
    const body = new ScaleBody(c);
    const dialog = new SubmitDialog({
      title: `Scale ${c.name}`,
      body,
      accept: 'Scale',
      submit: () => this.context.api.scaleCluster(c.id, body.patch())
    });
    const result = await dialog.launch();
    if (result.value) {
      await this.refresh();
    }
  }

  private _startForm: StartForm;
}

/** Workers, or adaptive between a minimum and a maximum. */
class ScaleBody extends FormBody<Cluster> {
  constructor(c: Cluster) {
    super();
    this._workers = numberInput(c.workers ?? 1);
    this._adaptive = h('input', { type: 'checkbox' });
    this._minimum = numberInput(0);
    this._maximum = numberInput(Math.max(1, c.workers ?? 1) * 2);
    const adaptFields = h(
      'div',
      { class: 'hybridnb-form-row' },
      field(this.errors, 'adapt.minimum', 'Minimum', this._minimum),
      field(this.errors, 'adapt.maximum', 'Maximum', this._maximum)
    );
    const fixed = field(this.errors, 'workers', 'Workers', this._workers);
    const toggle = () => {
      adaptFields.hidden = !this._adaptive.checked;
      fixed.hidden = this._adaptive.checked;
    };
    this._adaptive.addEventListener('change', toggle);
    const adapt = h(
      'label',
      { class: 'hybridnb-checkbox' },
      this._adaptive,
      'Adaptive: let the load choose between a minimum and a maximum'
    );
    const adaptMessage = h('div', {});
    this.errors.register('adapt', adaptMessage, this._adaptive);
    this.fields.append(fixed, adapt, adaptFields, adaptMessage);
    toggle();
  }

  patch(): ClusterPatch {
    if (this._adaptive.checked) {
      return {
        adapt: {
          minimum: numberValue(this._minimum) ?? 0,
          maximum: numberValue(this._maximum) ?? 0
        }
      };
    }
    return { workers: numberValue(this._workers) };
  }

  private _workers: HTMLInputElement;
  private _adaptive: HTMLInputElement;
  private _minimum: HTMLInputElement;
  private _maximum: HTMLInputElement;
}

/** Start a cluster: site and workers, errors under the field they are about. */
export class StartForm {
  constructor(
    private _context: ISectionContext,
    private _started: () => Promise<void>
  ) {
    this.site = h('select', { class: 'hybridnb-select' });
    this.workers = numberInput(2);
    this.submit = h(
      'button',
      { type: 'submit', class: 'jp-mod-styled jp-mod-accept hybridnb-start' },
      'Start'
    );
    const general = h('div', { role: 'alert' });
    this.errors = new FieldErrors(general);
    this.node = h(
      'form',
      { class: 'hybridnb-start-form', 'aria-label': 'Start a cluster' },
      h(
        'div',
        { class: 'hybridnb-form-row' },
        field(this.errors, 'site', 'Site', this.site),
        field(this.errors, 'workers', 'Workers', this.workers),
        h(
          'div',
          { class: 'hybridnb-field hybridnb-field-submit' },
          h('label', { 'aria-hidden': 'true' }, '\u00a0'),
          this.submit
        )
      ),
      general
    );
    this.node.addEventListener('submit', event => {
      event.preventDefault();
      void this.start();
    });
    this.setSites([]);
  }

  readonly node: HTMLFormElement;
  readonly site: HTMLSelectElement;
  readonly workers: HTMLInputElement;
  readonly submit: HTMLButtonElement;
  readonly errors: FieldErrors;

  setSites(sites: readonly Site[]): void {
    const names = sites.map(s => s.name);
    const keep = this.site.value || this._context.defaultSite();
    if (names.join('\n') === this._names.join('\n')) {
      return;
    }
    this._names = names;
    this.site.replaceChildren(
      ...(names.length
        ? names.map(name => h('option', { value: name }, name))
        : [h('option', { value: '' }, 'no sites yet')])
    );
    if (names.includes(keep)) {
      this.site.value = keep;
    }
  }

  select(site: string): void {
    if (this._names.includes(site)) {
      this.site.value = site;
    }
    this.workers.focus();
  }

  async start(): Promise<void> {
    this.errors.clear();
    this.submit.disabled = true;
    this.submit.textContent = 'Starting…';
    try {
      await this._context.api.startCluster({
        site: this.site.value,
        workers: numberValue(this.workers)
      });
      await this._started();
    } catch (error) {
      this.errors.show(error);
    } finally {
      this.submit.disabled = false;
      this.submit.textContent = 'Start';
    }
  }

  private _names: string[] = [];
}
