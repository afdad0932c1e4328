/**
 * The Jobs section (notebooks run as jobs: follow, cancel, download) and the dialog that
 * runs the open notebook as one, on the site the planner chooses.
 */

import { downloadIcon, runIcon } from '@jupyterlab/ui-components';

import { ApiError, HybridnbAPI, errorMessage } from './api';
import { badge, button, h } from './dom';
import { FormBody, SubmitDialog, field } from './form';
import {
  basename,
  formatAgo,
  formatDuration,
  isActive,
  parseLiteral
} from './format';
import type {
  Job,
  JobDetail,
  NotebookInfo,
  PlanAnswer,
  PlanRequest,
  Site
} from './models';
import { ISectionContext, Section, row, table } from './section';

export const RUN_AS_JOB = 'hybridnb:run-notebook-as-job';

/** How much of a followed job's log the sidebar shows. */
export const LOG_LINES = 8;

/** The last `n` lines of `text`. */
export function lastLines(text: string, n: number): string {
  const lines = text.replace(/\s+$/, '').split('\n');
  return lines.slice(-n).join('\n');
}

/** Trigger a browser download of `blob` as `filename`. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export class JobsSection extends Section<Job> {
  constructor(context: ISectionContext) {
    super({
      id: 'jobs',
      title: 'Jobs',
      context,
      empty: 'No jobs. Run a notebook as a job: it keeps running without this tab.'
    });
    this.tools.append(
      button({
        action: 'run-notebook',
        label: 'Run notebook as job…',
        icon: runIcon,
        title: 'Run the open notebook as a job, on the site the planner chooses',
        onClick: () => void context.commands.execute(RUN_AS_JOB)
      })
    );
  }

  /** Show a job's details (plan, log) and keep them fresh. */
  follow(jobId: string): void {
    this._followed.add(jobId);
    this.setCollapsed(false);
    void this.refresh();
  }

  unfollow(jobId: string): void {
    this._followed.delete(jobId);
    this._details.delete(jobId);
    this.redraw();
  }

  isFollowed(jobId: string): boolean {
    return this._followed.has(jobId);
  }

  protected async fetch(): Promise<Job[]> {
    const { jobs } = await this.context.api.jobs();
    // Followed jobs also get their detail (log tail), while they run and once after.
    await Promise.all(
      jobs
        .filter(j => this._followed.has(j.id))
        .filter(j => isActive(j.status) || !this._details.has(j.id))
        .map(async j => {
          try {
            this._details.set(j.id, await this.context.api.job(j.id));
          } catch (error) {
            this._details.delete(j.id);
          }
        })
    );
    // Keyed on the details too, so a longer log redraws.
    return jobs.map(j => ({
      ...j,
      _log: this._details.get(j.id)?.log_tail ?? ''
    }));
  }

  protected count(items: readonly Job[]): number {
    return items.filter(j => isActive(j.status)).length;
  }

  protected render(jobs: readonly Job[]): Node {
    return table(jobs.map(j => this._row(j)));
  }

  private _row(j: Job): HTMLTableRowElement {
    const followed = this._followed.has(j.id);
    const active = isActive(j.status);
    const took =
      j.started_at && j.ended_at
        ? `took ${formatDuration(j.ended_at - j.started_at)}`
        : j.started_at
          ? `started ${formatAgo(j.started_at)}`
          : `queued ${formatAgo(j.created_at)}`;
    const actions = [
      button({
        action: 'follow',
        label: followed ? 'Unfollow' : 'Follow',
        title: followed
          ? 'Hide the plan and the log'
          : 'Show the plan and the log as it runs',
        onClick: () =>
          followed ? this.unfollow(j.id) : this.follow(j.id)
      }),
      active
        ? button({
            action: 'cancel',
            label: 'Cancel',
            danger: true,
            title: `Cancel ${j.name}`,
            onClick: () => void this._cancel(j)
          })
        : null,
      j.output
        ? button({
            action: 'output',
            label: 'Output',
            icon: downloadIcon,
            title: 'Download the executed notebook',
            onClick: () => void this._download(j, 'output')
          })
        : null,
      j.report
        ? button({
            action: 'report',
            label: 'Report',
            icon: downloadIcon,
            title: 'Download the HTML report',
            onClick: () => void this._download(j, 'report')
          })
        : null
    ].filter((b): b is HTMLButtonElement => b !== null);
    return row({
      id: j.id,
      name: basename(j.notebook) || j.name,
      details: [j.site, j.mode !== 'local' ? j.mode : null, took],
      state: badge(j.status),
      actions,
      extra: [j.error ? h('div', { class: 'hybridnb-row-error' }, j.error) : null],
      below: [followed ? this._detail(j) : null],
      dimmed: !active && !followed
    });
  }

  private _detail(j: Job): HTMLElement {
    const detail = this._details.get(j.id);
    const params = Object.entries(j.parameters ?? {})
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ');
    return h(
      'div',
      { class: 'hybridnb-job-detail' },
      j.plan ? h('div', { class: 'hybridnb-plan' }, j.plan) : null,
      params ? h('div', {}, h('b', {}, 'Parameters: '), params) : null,
      detail?.log_tail
        ? h('pre', { class: 'hybridnb-log' }, lastLines(detail.log_tail, LOG_LINES))
        : null
    );
  }

  private async _cancel(j: Job): Promise<void> {
    const ok = await this.confirm(
      `Cancel job ${j.name}?`,
      `${basename(j.notebook)} stops where it is; what it wrote so far stays.`,
      'Cancel job'
    );
    if (ok) {
      await this.act(`cancelling ${j.name}`, () =>
        this.context.api.cancelJob(j.id)
      );
    }
  }

  private async _download(j: Job, what: 'output' | 'report'): Promise<void> {
    await this.act(`downloading the ${what} of ${j.name}`, async () => {
      const blob = await this.context.api.jobFile(j.id, what);
      const fallback = what === 'output' ? `${j.name}.ipynb` : `${j.name}.html`;
      const path = what === 'output' ? j.output : j.report;
      saveBlob(blob, path ? basename(path) : fallback);
    });
  }

  private _followed = new Set<string>();
  private _details = new Map<string, JobDetail>();
}

/** The parts of a notebook's declared resources that a plan request takes. */
export function planRequest(info: NotebookInfo): PlanRequest {
  const request: PlanRequest = { kind: 'notebook', data: info.data ?? [] };
  const resources = info.resources ?? {};
  for (const key of ['cpu', 'gpu', 'hours'] as const) {
    if (typeof resources[key] === 'number') {
      request[key] = resources[key] as number;
    }
  }
  const memory = resources.memory;
  if (typeof memory === 'number' || typeof memory === 'string') {
    request.memory = memory;
  }
  return request;
}

/** The form of the run-as-job dialog: parameters, site, and the planner's choice. */
export class JobBody extends FormBody<Job> {
  constructor(
    private _api: HybridnbAPI,
    readonly notebook: string,
    private _defaultSite = ''
  ) {
    super();
    this.addClass('hybridnb-job-form');
    this.site = h('select', { class: 'hybridnb-select' });
    this._params = h('div', { class: 'hybridnb-params' }, 'Reading parameters…');
    this._plan = h('div', { class: 'hybridnb-plan', 'aria-live': 'polite' });
    const notebookError = h('div', { role: 'alert' });
    this.errors.register('notebook', notebookError);
    this.fields.append(
      h('div', { class: 'hybridnb-notebook' }, h('b', {}, 'Notebook: '), notebook),
      notebookError,
      h('h4', {}, 'Parameters'),
      this._params,
      h('h4', {}, 'Site'),
      field(this.errors, 'site', 'Run on', this.site),
      this._plan
    );
    this.site.addEventListener('change', () => this._showPlan());
  }

  readonly site: HTMLSelectElement;

  /** Read the notebook's parameters, the sites and the plan (the dialog shows them). */
  async load(): Promise<void> {
    const [info, sites] = await Promise.all([
      this._api.notebookParameters(this.notebook).catch(error => {
        this._params.replaceChildren();
        this.errors.show(
          new ApiError(errorMessage(error), 400, 'notebook')
        );
        return null;
      }),
      this._api
        .sites()
        .then(answer => answer.sites)
        .catch(() => [] as Site[])
    ]);
    this.site.replaceChildren(
      h('option', { value: '' }, "Planner's choice"),
      ...sites.map(s => h('option', { value: s.name }, `${s.name} (${s.tier})`))
    );
    if (sites.some(s => s.name === this._defaultSite)) {
      this.site.value = this._defaultSite;
    }
    if (info) {
      this._drawParameters(info);
      try {
        this._answer = await this._api.plan(planRequest(info));
      } catch (error) {
        this._answer = null;
        this._planError = errorMessage(error);
      }
      this._showPlan();
    }
  }

  /** The planner's answer, once loaded. */
  get plan(): PlanAnswer | null {
    return this._answer;
  }

  /** The parameters the user changed, parsed (`"0.1"` → 0.1, `'True'` → true). */
  parameters(): { [name: string]: unknown } {
    const out: { [name: string]: unknown } = {};
    for (const [name, { input, initial }] of this._inputs) {
      if (input.value !== initial) {
        out[name] = parseLiteral(input.value);
      }
    }
    return out;
  }

  private _drawParameters(info: NotebookInfo): void {
    this._inputs.clear();
    if (!info.parameters.length) {
      this._params.replaceChildren(
        h(
          'div',
          { class: 'hybridnb-empty' },
          'No parameters cell: the notebook runs as it is.'
        )
      );
      return;
    }
    this._params.replaceChildren(
      ...info.parameters.map(p => {
        const initial = p.default ?? '';
        const input = h('input', {
          type: 'text',
          class: 'jp-mod-styled',
          spellcheck: 'false'
        });
        input.value = initial;
        this._inputs.set(p.name, { input, initial });
        const type = p.type && p.type !== 'None' ? p.type : '';
        return field(
          this.errors,
          `parameters.${p.name}`,
          type ? `${p.name}: ${type}` : p.name,
          input,
          p.help || undefined
        );
      })
    );
    // A message about "parameters" as a whole goes at the top of the list.
    const whole = h('div', {});
    this._params.prepend(whole);
    this.errors.register('parameters', whole);
  }

  private _showPlan(): void {
    const answer = this._answer;
    if (!answer) {
      this._plan.replaceChildren(
        this._planError
          ? h('div', { class: 'hybridnb-field-error' }, this._planError)
          : ''
      );
      return;
    }
    const chosen = this.site.value || answer.chosen;
    const rejected = answer.rejected.find(r => r.site === chosen);
    const warning =
      rejected && this.site.value
        ? h(
            'div',
            { class: 'hybridnb-field-error' },
            `${rejected.site} cannot take it: ${rejected.reasons.join('; ')}`
          )
        : '';
    this._plan.replaceChildren(
      h(
        'div',
        { class: 'hybridnb-plan-choice' },
        answer.chosen
          ? `The planner chooses ${answer.chosen} (${answer.policy}).`
          : 'No site can run this notebook.'
      ),
      h('div', { class: 'hybridnb-plan-explanation' }, answer.explanation),
      warning
    );
  }

  private _answer: PlanAnswer | null = null;
  private _planError = '';
  private _params: HTMLDivElement;
  private _plan: HTMLDivElement;
  private _inputs = new Map<string, { input: HTMLInputElement; initial: string }>();
}

/**
 * Ask for parameters and a site, then submit `notebook` (a server path) as a job.
 * Resolves with the job, or `null` when the user cancelled.
 */
export async function runAsJob(
  api: HybridnbAPI,
  notebook: string,
  defaultSite = '',
  beforeSubmit?: () => Promise<void>
): Promise<Job | null> {
  const body = new JobBody(api, notebook, defaultSite);
  const dialog = new SubmitDialog<Job>({
    title: 'Run notebook as a job',
    body,
    accept: 'Run job',
    submit: async () => {
      await beforeSubmit?.();
      return api.submitJob({
        notebook,
        parameters: body.parameters(),
        site: body.site.value || null
      });
    }
  });
  void body.load();
  const result = await dialog.launch();
  return result.value ?? null;
}
