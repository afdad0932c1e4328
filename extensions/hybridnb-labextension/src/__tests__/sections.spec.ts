import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { ApiError } from '../api';
import { ClustersSection } from '../clusters';
import { JobsSection } from '../jobs';
import type { Cluster, Job } from '../models';
import { AlertsSection, EndpointsSection, RunsSection } from '../resources';
import { FakeAPI, context, settle } from './fake';

function cluster(overrides: Partial<Cluster> = {}): Cluster {
  return {
    id: 'c1',
    name: 'local-1a2b',
    site: 'local',
    backend: 'local',
    status: 'running',
    started_from: 'sidebar',
    controllable: true,
    host: 'h',
    owner: 'me',
    workers: 2,
    threads: 4,
    memory_bytes: 4 * 1024 ** 3,
    dashboard: '/hybridnb/dashboard/c1/status',
    created_at: Date.now() / 1000 - 60,
    ...overrides
  };
}

function attach(widget: Widget): Widget {
  Widget.attach(widget, document.body);
  return widget;
}

describe('ClustersSection', () => {
  let section: ClustersSection;
  afterEach(() => {
    section?.dispose();
  });

  it('lists clusters with workers, memory and where they were started', async () => {
    const api = new FakeAPI({
      'GET clusters': {
        clusters: [
          cluster(),
          cluster({ id: 'c2', name: 'from-kernel', started_from: 'python', controllable: false })
        ]
      }
    });
    section = new ClustersSection(context(api));
    attach(section);
    await section.refresh();
    const rows = section.node.querySelectorAll('tr.hybridnb-row');
    expect(rows.length).toBe(2);
    const first = rows[0].textContent ?? '';
    expect(first).toContain('local-1a2b');
    expect(first).toContain('2 workers');
    expect(first).toContain('4 GiB');
    expect(first).toContain('from the sidebar');
    expect(rows[1].textContent).toContain('from a kernel');
    // A kernel's cluster is listed, but only that kernel stops or scales it.
    const stop = rows[1].querySelector<HTMLButtonElement>('[data-action="stop"]')!;
    expect(stop.disabled).toBe(true);
    expect(stop.title).toContain('started in a kernel');
    expect(rows[0].querySelector<HTMLButtonElement>('[data-action="stop"]')!.disabled).toBe(false);
    expect(section.node.querySelector('.hybridnb-section-count')?.textContent).toBe('2');
  });

  it('inserts the connect code through hybridnb:insert-cell', async () => {
    const commands = new CommandRegistry();
    const inserted: string[] = [];
    commands.addCommand('hybridnb:insert-cell', {
      execute: args => {
        inserted.push(String(args.code));
      }
    });
    const api = new FakeAPI({ 'GET clusters': { clusters: [cluster()] } });
    section = new ClustersSection(context(api, commands));
    attach(section);
    await section.refresh();
    section.node.querySelector<HTMLButtonElement>('[data-action="connect"]')!.click();
    await settle();
    expect(inserted).toEqual(['import hybridnb\n\nc = hybridnb.connect("local-1a2b")\nc']);
  });

  it('shows a start error next to the field the server names', async () => {
    const api = new FakeAPI({
      'GET clusters': { clusters: [] },
      'POST clusters': (body: any) =>
        body.workers < 0
          ? new ApiError('workers: Input should be greater than or equal to 0', 400, 'workers')
          : cluster()
    });
    section = new ClustersSection(context(api));
    section.setSites([
      { name: 'local', tier: 'private', backend: 'local', capacity: { cpu: 2, memory: 1 }, classifications: [], cost: {} },
      { name: 'cloud', tier: 'public', backend: 'local', capacity: { cpu: 2, memory: 1 }, classifications: [], cost: {} }
    ]);
    attach(section);
    await section.refresh();
    const form = section.node.querySelector('form')!;
    const site = form.querySelector<HTMLSelectElement>('select')!;
    const workers = form.querySelector<HTMLInputElement>('input[name="workers"]')!;
    site.value = 'cloud';
    workers.value = '-1';
    form.dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    const message = form.querySelector('[data-field="workers"] .hybridnb-field-error');
    expect(message?.textContent).toContain('greater than or equal to 0');
    expect(api.calls.find(c => c.route === 'POST clusters')?.body).toEqual({
      site: 'cloud',
      workers: -1
    });
    workers.value = '1';
    form.dispatchEvent(new Event('submit', { cancelable: true }));
    await settle();
    expect(message?.textContent).toBe('');
  });

  it('keeps the last list, dimmed, while the route fails, and backs off', async () => {
    let fail = false;
    const api = new FakeAPI({
      'GET clusters': () =>
        fail ? new ApiError('503 Service Unavailable', 503) : { clusters: [cluster()] }
    });
    const ctx = { ...context(api), interval: () => 20 };
    section = new ClustersSection(ctx);
    attach(section);
    await section.refresh();
    const waits: number[] = [];
    section.poll.ticked.connect((_, state) => {
      if (state.phase === 'rejected') {
        waits.push(state.interval);
      }
    });
    fail = true;
    await section.refresh();
    expect(section.node.querySelector('.hybridnb-section-error')?.textContent).toContain('503');
    expect(section.node.querySelectorAll('tr.hybridnb-row').length).toBe(1);
    expect(section.node.querySelector('.hybridnb-mod-stale')).not.toBeNull();
    expect(section.poll.state.phase).toBe('rejected');
    // Failing ticks come further and further apart (at most MAX_BACKOFF).
    await settle(400);
    expect(waits.length).toBeGreaterThan(2);
    expect(Math.max(...waits)).toBeGreaterThan(20);
    expect(Math.max(...waits)).toBeLessThanOrEqual(60_000);
    fail = false;
    await section.refresh();
    expect(section.node.querySelector('.hybridnb-section-error')?.textContent).toBe('');
    expect(section.node.querySelector('.hybridnb-mod-stale')).toBeNull();
  });

  it('stands by while collapsed or hidden', async () => {
    const api = new FakeAPI({ 'GET clusters': { clusters: [] } });
    section = new ClustersSection(context(api));
    attach(section);
    expect(section.standby()).toBe('when-hidden');
    section.setCollapsed(true);
    expect(section.standby()).toBe(true);
    const before = api.calls.length;
    await section.refresh();
    expect(api.calls.length).toBe(before);
    section.setCollapsed(false);
    section.hide();
    expect(section.standby()).toBe(true);
  });
});

describe('JobsSection', () => {
  let section: JobsSection;
  afterEach(() => section?.dispose());

  const job: Job = {
    id: 'j1',
    name: 'sq-1',
    notebook: '/root/sq.ipynb',
    site: 'lab',
    mode: 'local',
    status: 'running',
    plan: 'lab: cheapest site that may hold pii',
    owner: 'me',
    created_at: Date.now() / 1000 - 10,
    started_at: Date.now() / 1000 - 5,
    log: '/tmp/log',
    parameters: { n: 3 }
  };

  it('follows a job: its plan, parameters and log', async () => {
    const api = new FakeAPI({
      'GET jobs': { jobs: [job] },
      'GET jobs/j1': { ...job, log_tail: 'executing cell 2 of 3' }
    });
    section = new JobsSection(context(api));
    attach(section);
    await section.refresh();
    expect(section.node.querySelector('.hybridnb-log')).toBeNull();
    section.node.querySelector<HTMLButtonElement>('[data-action="follow"]')!.click();
    await section.refresh();
    const detail = section.node.querySelector('.hybridnb-job-detail')!;
    expect(detail.textContent).toContain('cheapest site that may hold pii');
    expect(detail.textContent).toContain('n=3');
    expect(section.node.querySelector('.hybridnb-log')?.textContent).toBe(
      'executing cell 2 of 3'
    );
    expect(section.node.querySelector('[data-action="cancel"]')).not.toBeNull();
    expect(section.node.querySelector('[data-action="output"]')).toBeNull();
  });

  it('offers the output and report of a finished job', async () => {
    const api = new FakeAPI({
      'GET jobs': {
        jobs: [{ ...job, status: 'succeeded', ended_at: job.started_at! + 4, output: '/o/sq.ipynb', report: '/o/sq.html' }]
      }
    });
    section = new JobsSection(context(api));
    attach(section);
    await section.refresh();
    expect(section.node.querySelector('[data-action="cancel"]')).toBeNull();
    expect(section.node.querySelector('[data-action="output"]')).not.toBeNull();
    expect(section.node.querySelector('[data-action="report"]')).not.toBeNull();
    expect(section.node.textContent).toContain('took 4 s');
  });
});

describe('AlertsSection', () => {
  it('puts firing alerts first and counts them', async () => {
    const api = new FakeAPI({
      'GET alerts': {
        alerts: [
          { name: 'B', state: 'inactive', severity: 'info', threshold: 'x > 1' },
          { name: 'A', state: 'firing', severity: 'page', threshold: 'p99 > 0.5', summary: 'slow' }
        ]
      }
    });
    const section = new AlertsSection(context(api));
    attach(section);
    await section.refresh();
    const names = [...section.node.querySelectorAll('.hybridnb-name')].map(n => n.textContent);
    expect(names).toEqual(['A', 'B']);
    expect(section.node.querySelector('.hybridnb-section-count')?.textContent).toBe('1');
    expect(section.node.querySelector('.hybridnb-badge-bad')?.textContent).toBe('firing');
    section.dispose();
  });
});

describe('RunsSection and EndpointsSection', () => {
  it('draws a run with its metrics and a loss sparkline over polls', async () => {
    let loss = 0.9;
    const run = () => ({
      runs: [
        {
          id: 'r1',
          name: 'digits',
          site: 'lab',
          status: 'running',
          launcher: 'torchrun',
          metrics: { epoch: 2, loss, accuracy: 0.91 },
          created_at: Date.now() / 1000
        }
      ]
    });
    const api = new FakeAPI({ 'GET runs': () => run() });
    const section = new RunsSection(context(api));
    attach(section);
    await section.refresh();
    expect(section.node.querySelector('.hybridnb-sparkline')).toBeNull();
    loss = 0.5;
    await section.refresh();
    expect(section.node.textContent).toContain('loss 0.5');
    expect(section.node.textContent).toContain('acc 0.91');
    expect(section.node.querySelector('.hybridnb-sparkline polyline')).not.toBeNull();
    section.dispose();
  });

  it('sends only what changed when an endpoint is scaled', async () => {
    const endpoint = {
      id: 'e1',
      name: 'digits-api',
      site: 'lab',
      status: 'running',
      url: 'http://127.0.0.1:9000',
      replicas: 2,
      canary_percent: 0,
      p50_ms: 3.2,
      p99_ms: 9.1,
      controllable: true,
      created_at: Date.now() / 1000
    };
    const api = new FakeAPI({
      'GET endpoints': { endpoints: [endpoint] },
      'PATCH endpoints/e1': (body: unknown) => ({ ...endpoint, ...(body as object) })
    });
    const section = new EndpointsSection(context(api));
    attach(section);
    await section.refresh();
    expect(section.node.textContent).toContain('2 replicas');
    expect(section.node.textContent).toContain('p99 9.1 ms');
    section.node.querySelector<HTMLButtonElement>('[data-action="scale"]')!.click();
    await settle();
    const dialog = document.querySelector('.jp-Dialog')!;
    const replicas = dialog.querySelector<HTMLInputElement>('input[name="replicas"]')!;
    replicas.value = '3';
    dialog.querySelector<HTMLButtonElement>('.jp-Dialog-footer .jp-mod-accept')!.click();
    await settle(50);
    expect(api.calls.find(c => c.route === 'PATCH endpoints/e1')?.body).toEqual({
      replicas: 3
    });
    section.dispose();
  });
});
