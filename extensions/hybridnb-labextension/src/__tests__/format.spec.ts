import {
  badgeKind,
  basename,
  connectCode,
  dashboardUrl,
  formatAgo,
  formatBytes,
  formatDuration,
  formatNumber,
  isActive,
  parseLiteral
} from '../format';
import { summaryText } from '../statusbar';
import { lastLines, planRequest } from '../jobs';

describe('formatting', () => {
  it('reads bytes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(8 * 1024 ** 3)).toBe('8 GiB');
    expect(formatBytes(null)).toBe('–');
  });

  it('reads durations and ages', () => {
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min');
    expect(formatDuration(2 * 3600 + 300)).toBe('2 h 5 min');
    expect(formatDuration(3 * 86400)).toBe('3 d');
    const now = 1_000_000_000_000;
    expect(formatAgo(now / 1000 - 2, now)).toBe('just now');
    expect(formatAgo(now / 1000 - 120, now)).toBe('2 min ago');
    expect(formatAgo(undefined, now)).toBe('–');
  });

  it('keeps three significant digits', () => {
    expect(formatNumber(0.123456)).toBe('0.123');
    expect(formatNumber(12)).toBe('12');
    expect(formatNumber(NaN)).toBe('–');
  });

  it('gives every state a badge kind', () => {
    expect(badgeKind('running')).toBe('ok');
    expect(badgeKind('starting')).toBe('busy');
    expect(badgeKind('queued')).toBe('busy');
    expect(badgeKind('failed')).toBe('bad');
    expect(badgeKind('firing')).toBe('bad');
    expect(badgeKind('succeeded')).toBe('done');
    expect(badgeKind('something-new')).toBe('idle');
    expect(isActive('stopping')).toBe(true);
    expect(isActive('stopped')).toBe(false);
  });

  it('names files', () => {
    expect(basename('a/b/run.ipynb')).toBe('run.ipynb');
    expect(basename('run.ipynb')).toBe('run.ipynb');
  });
});

describe('connectCode', () => {
  it('connects by name with a Python string literal', () => {
    expect(connectCode('local-1a2b')).toBe(
      'import hybridnb\n\nc = hybridnb.connect("local-1a2b")\nc'
    );
    expect(connectCode('odd"name')).toContain('connect("odd\\"name")');
  });
});

describe('parseLiteral', () => {
  it('reads JSON and Python literals', () => {
    expect(parseLiteral('0.1')).toBe(0.1);
    expect(parseLiteral('12')).toBe(12);
    expect(parseLiteral('True')).toBe(true);
    expect(parseLiteral('None')).toBeNull();
    expect(parseLiteral('"text"')).toBe('text');
    expect(parseLiteral("'text'")).toBe('text');
    expect(parseLiteral("['a', 'b']")).toEqual(['a', 'b']);
    expect(parseLiteral("{'lr': 0.1, 'fast': False}")).toEqual({
      lr: 0.1,
      fast: false
    });
  });

  it('keeps anything else as the text itself', () => {
    expect(parseLiteral('digits')).toBe('digits');
    expect(parseLiteral('a + b')).toBe('a + b');
  });
});

describe('dashboardUrl', () => {
  it('keeps a path that already carries the base URL and its page', () => {
    expect(
      dashboardUrl('/user/alice/hybridnb/dashboard/c1/status', '/user/alice/')
    ).toBe('/user/alice/hybridnb/dashboard/c1/status');
  });

  it('puts the base URL in front of a relative path', () => {
    expect(dashboardUrl('hybridnb/dashboard/c1/', '/user/alice/')).toBe(
      '/user/alice/hybridnb/dashboard/c1/status'
    );
    expect(
      dashboardUrl('hybridnb/dashboard/c1/', 'http://127.0.0.1:8888/')
    ).toBe('/hybridnb/dashboard/c1/status');
  });

  it('adds the page to a root path', () => {
    expect(dashboardUrl('/hybridnb/dashboard/c1/', '/', 'workers')).toBe(
      '/hybridnb/dashboard/c1/workers'
    );
  });
});

describe('summaryText', () => {
  it('says what runs', () => {
    expect(
      summaryText({
        clusters: 1,
        endpoints: 2,
        runs: 0,
        jobs_running: 1,
        jobs_queued: 1,
        alerts_firing: 0
      })
    ).toBe('1 cluster · 2 endpoints · 2 jobs');
  });
});

describe('planRequest', () => {
  it('takes the notebook data and resources', () => {
    expect(
      planRequest({
        parameters: [],
        data: ['patients'],
        resources: { cpu: 2, memory: '4GiB', other: 'x' }
      })
    ).toEqual({ kind: 'notebook', data: ['patients'], cpu: 2, memory: '4GiB' });
  });
});

describe('lastLines', () => {
  it('keeps the end of a log', () => {
    expect(lastLines('a\nb\nc\n\n', 2)).toBe('b\nc');
    expect(lastLines('only', 5)).toBe('only');
  });
});
