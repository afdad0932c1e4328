/**
 * The Sites, Runs, Endpoints and Alerts sections.
 */

import { addIcon } from '@jupyterlab/ui-components';

import { badge, button, h, sparkline } from './dom';
import { FormBody, SubmitDialog, field, numberInput, numberValue } from './form';
import { formatAgo, formatBytes, formatNumber, isActive } from './format';
import type { Alert, Endpoint, EndpointPatch, Run, Site } from './models';
import { ISectionContext, Section, row, table } from './section';

export class SitesSection extends Section<Site> {
  constructor(
    context: ISectionContext,
    private _startOn: (site: string) => void
  ) {
    super({
      id: 'sites',
      title: 'Sites',
      context,
      empty: 'No sites configured: see `hybridnb sites list`.'
    });
  }

  protected fetch(): Promise<Site[]> {
    return this.context.api.sites().then(answer => answer.sites);
  }

  protected render(sites: readonly Site[]): Node {
    return table(
      sites.map(s => {
        const cap = s.capacity;
        return row({
          id: s.name,
          name: s.name,
          details: [
            s.backend,
            `${formatNumber(cap.cpu)} CPU`,
            formatBytes(cap.memory),
            cap.gpu ? `${cap.gpu} GPU${cap.gpu_type ? ` ${cap.gpu_type}` : ''}` : null,
            s.cost.cpu_hour ? `$${formatNumber(s.cost.cpu_hour)}/CPU·h` : null
          ],
          state: h('span', { class: 'hybridnb-tier', 'data-tier': s.tier }, s.tier),
          extra: [
            s.classifications.length
              ? h(
                  'div',
                  { class: 'hybridnb-tags' },
                  ...s.classifications.map(c =>
                    h('span', { class: 'hybridnb-tag', title: 'data it may hold' }, c)
                  )
                )
              : null
          ],
          tools: [
            button({
              action: 'start-here',
              icon: addIcon,
              title: `Start a cluster on ${s.name}`,
              onClick: () => this._startOn(s.name)
            })
          ]
        });
      })
    );
  }
}

/** How many past values of a run's loss the sparkline shows. */
const HISTORY = 40;

export class RunsSection extends Section<Run> {
  constructor(context: ISectionContext) {
    super({
      id: 'runs',
      title: 'Runs',
      context,
      empty: 'No training runs.'
    });
  }

  protected async fetch(): Promise<Run[]> {
    const { runs } = await this.context.api.runs();
    for (const r of runs) {
      const loss = r.metrics?.loss;
      if (typeof loss === 'number' && isActive(r.status)) {
        const history = this._loss.get(r.id) ?? [];
        if (history[history.length - 1] !== loss) {
          history.push(loss);
        }
        this._loss.set(r.id, history.slice(-HISTORY));
      }
    }
    return runs;
  }

  protected count(items: readonly Run[]): number {
    return items.filter(r => isActive(r.status)).length;
  }

  protected render(runs: readonly Run[]): Node {
    return table(
      runs.map(r => {
        const m = r.metrics ?? {};
        const active = isActive(r.status);
        return row({
          id: r.id,
          name: r.name,
          details: [
            r.site,
            r.launcher,
            m.epoch !== undefined ? `epoch ${formatNumber(m.epoch)}` : null,
            m.loss !== undefined ? `loss ${formatNumber(m.loss)}` : null,
            m.accuracy !== undefined ? `acc ${formatNumber(m.accuracy)}` : null,
            m.samples_per_second !== undefined
              ? `${formatNumber(m.samples_per_second, 4)} samples/s`
              : null,
            formatAgo(r.created_at)
          ],
          state: badge(r.status),
          aside: [sparkline(this._loss.get(r.id) ?? [])],
          extra: [r.error ? h('div', { class: 'hybridnb-row-error' }, r.error) : null],
          actions: active
            ? [
                button({
                  action: 'stop',
                  label: 'Stop',
                  danger: true,
                  title: `Stop the run ${r.name}`,
                  disabled: r.status === 'stopping',
                  onClick: () => void this._stop(r)
                })
              ]
            : [],
          dimmed: !active
        });
      })
    );
  }

  private async _stop(r: Run): Promise<void> {
    if (
      await this.confirm(
        `Stop run ${r.name}?`,
        'Its ranks stop; the last checkpoint stays.',
        'Stop'
      )
    ) {
      await this.act(`stopping ${r.name}`, () => this.context.api.stopRun(r.id));
    }
  }

  private _loss = new Map<string, number[]>();
}

export class EndpointsSection extends Section<Endpoint> {
  constructor(context: ISectionContext) {
    super({
      id: 'endpoints',
      title: 'Endpoints',
      context,
      empty: 'No endpoints.'
    });
  }

  protected fetch(): Promise<Endpoint[]> {
    return this.context.api.endpoints().then(answer => answer.endpoints);
  }

  protected count(items: readonly Endpoint[]): number {
    return items.filter(e => isActive(e.status)).length;
  }

  protected render(endpoints: readonly Endpoint[]): Node {
    return table(
      endpoints.map(e => {
        const active = isActive(e.status);
        const canary = e.canary_percent
          ? `canary ${formatNumber(e.canary_percent)}%`
          : null;
        return row({
          id: e.id,
          name: e.name,
          details: [
            e.site,
            e.replicas !== null && e.replicas !== undefined
              ? `${e.replicas} replica${e.replicas === 1 ? '' : 's'}`
              : null,
            canary,
            e.p50_ms !== null && e.p50_ms !== undefined
              ? `p50 ${formatNumber(e.p50_ms)} ms`
              : null,
            e.p99_ms !== null && e.p99_ms !== undefined
              ? `p99 ${formatNumber(e.p99_ms)} ms`
              : null,
            e.versions?.length ? e.versions.join(', ') : null
          ],
          state: badge(e.status),
          extra: [e.error ? h('div', { class: 'hybridnb-row-error' }, e.error) : null],
          actions: active
            ? [
                button({
                  action: 'scale',
                  label: 'Scale',
                  title: `Change replicas or the canary share of ${e.name}`,
                  disabled: !e.controllable || e.status !== 'running',
                  onClick: () => void this._scale(e)
                }),
                button({
                  action: 'stop',
                  label: 'Stop',
                  danger: true,
                  title: `Stop ${e.name}`,
                  disabled: !e.controllable || e.status === 'stopping',
                  onClick: () => void this._stop(e)
                })
              ]
            : [],
          dimmed: !active
        });
      })
    );
  }

  private async _scale(e: Endpoint): Promise<void> {
    const body = new EndpointBody(e);
    const result = await new SubmitDialog({
      title: `Scale ${e.name}`,
      body,
      accept: 'Apply',
      submit: () => this.context.api.patchEndpoint(e.id, body.patch())
    }).launch();
    if (result.value) {
      await this.refresh();
    }
  }

  private async _stop(e: Endpoint): Promise<void> {
    if (
      await this.confirm(
        `Stop endpoint ${e.name}?`,
        'Its replicas stop and its URL stops answering.',
        'Stop'
      )
    ) {
      await this.act(`stopping ${e.name}`, () =>
        this.context.api.stopEndpoint(e.id)
      );
    }
  }
}

class EndpointBody extends FormBody<Endpoint> {
  constructor(private _endpoint: Endpoint) {
    super();
    this._replicas = numberInput(_endpoint.replicas ?? 1);
    this._canary = numberInput(_endpoint.canary_percent ?? 0);
    this.fields.append(
      field(this.errors, 'replicas', 'Replicas', this._replicas),
      field(
        this.errors,
        'canary_percent',
        'Canary share (%)',
        this._canary,
        'Share of requests sent to the canary version (0–100).'
      )
    );
  }

  /** Only what changed. */
  patch(): EndpointPatch {
    const patch: EndpointPatch = {};
    const replicas = numberValue(this._replicas);
    const canary = numberValue(this._canary);
    if (replicas !== (this._endpoint.replicas ?? null)) {
      patch.replicas = replicas;
    }
    if (canary !== (this._endpoint.canary_percent ?? 0)) {
      patch.canary_percent = canary;
    }
    return patch;
  }

  private _replicas: HTMLInputElement;
  private _canary: HTMLInputElement;
}

const ALERT_ORDER: { [state: string]: number } = {
  firing: 0,
  pending: 1,
  inactive: 2
};

export class AlertsSection extends Section<Alert> {
  constructor(context: ISectionContext) {
    super({
      id: 'alerts',
      title: 'Alerts',
      context,
      empty: 'No alert rules.'
    });
  }

  protected async fetch(): Promise<Alert[]> {
    const { alerts } = await this.context.api.alerts();
    return [...alerts].sort(
      (a, b) =>
        (ALERT_ORDER[a.state] ?? 3) - (ALERT_ORDER[b.state] ?? 3) ||
        a.name.localeCompare(b.name)
    );
  }

  protected count(items: readonly Alert[]): number {
    return items.filter(a => a.state === 'firing').length;
  }

  protected render(alerts: readonly Alert[]): Node {
    return table(
      alerts.map(a =>
        row({
          id: `${a.name}:${JSON.stringify(a.labels ?? {})}`,
          name: a.name,
          details: [
            a.severity,
            a.value !== null && a.value !== undefined
              ? `value ${formatNumber(a.value)}`
              : null,
            a.since ? `since ${formatAgo(a.since)}` : null
          ],
          state: badge(a.state),
          // Rules that are quiet take one line; the ones that fire say why.
          extra:
            a.state === 'inactive'
              ? []
              : [
                  a.summary ? h('div', { class: 'hybridnb-summary' }, a.summary) : null,
                  h('code', { class: 'hybridnb-threshold', title: a.threshold }, a.threshold)
                ],
          dimmed: a.state === 'inactive'
        })
      )
    );
  }
}
