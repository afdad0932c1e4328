/**
 * Pure helpers: how numbers, times, states and generated code read in the sidebar.
 */

import { URLExt } from '@jupyterlab/coreutils';

/** `1536` → `"1.5 KiB"`; `null` → `"–"`. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return '–';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits).replace(/\.0$/, '')} ${units[unit]}`;
}

/** Seconds as `"45 s"`, `"3 min"`, `"2 h 5 min"`, `"3 d"`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    const rest = minutes % 60;
    return rest ? `${hours} h ${rest} min` : `${hours} h`;
  }
  return `${Math.floor(hours / 24)} d`;
}

/** A UNIX time (seconds) as `"5 min ago"`, relative to `now` (ms, default: now). */
export function formatAgo(
  unixSeconds: number | null | undefined,
  now: number = Date.now()
): string {
  if (unixSeconds === null || unixSeconds === undefined) {
    return '–';
  }
  const delta = now / 1000 - unixSeconds;
  if (delta < 5) {
    return 'just now';
  }
  return `${formatDuration(delta)} ago`;
}

/** A number with at most `digits` significant decimals: `0.12345` → `"0.123"`. */
export function formatNumber(
  value: number | null | undefined,
  digits = 3
): string {
  if (value === null || value === undefined || !isFinite(value)) {
    return '–';
  }
  if (Number.isInteger(value)) {
    return String(value);
  }
  return String(Number(value.toPrecision(digits)));
}

/** The kinds of badge a state gets: the CSS class `hybridnb-badge-<kind>`. */
export type BadgeKind = 'ok' | 'busy' | 'idle' | 'bad' | 'done';

const BADGES: { [state: string]: BadgeKind } = {
  running: 'ok',
  pending: 'busy',
  starting: 'busy',
  stopping: 'busy',
  queued: 'busy',
  stopped: 'idle',
  cancelled: 'idle',
  inactive: 'idle',
  succeeded: 'done',
  failed: 'bad',
  lost: 'bad',
  firing: 'bad'
};

/** The badge kind of a status or alert state (unknown states read as idle). */
export function badgeKind(state: string): BadgeKind {
  return BADGES[state] ?? 'idle';
}

/** Whether a record in this state is still alive (can be stopped or cancelled). */
export function isActive(state: string): boolean {
  return ['pending', 'starting', 'running', 'stopping', 'queued'].includes(
    state
  );
}

/** The code that connects a notebook to a running cluster by name. */
export function connectCode(name: string): string {
  return `import hybridnb\n\nc = hybridnb.connect(${pythonString(name)})\nc`;
}

/** A Python string literal for any text (JSON's escapes are valid Python). */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/**
 * A parameter's text as the value to send: JSON first, then Python's literals
 * (`True`, `None`, `'quoted'`), otherwise the text itself as a string.
 */
export function parseLiteral(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed === '') {
    return '';
  }
  const keywords: { [word: string]: unknown } = {
    True: true,
    False: false,
    None: null
  };
  if (trimmed in keywords) {
    return keywords[trimmed];
  }
  try {
    return JSON.parse(trimmed);
  } catch {
    // not JSON
  }
  const quoted = /^'((?:[^'\\]|\\.)*)'$/.exec(trimmed);
  if (quoted) {
    return quoted[1].replace(/\\(.)/g, '$1');
  }
  try {
    // Python lists and dicts of simple literals: single quotes and True/False/None.
    return JSON.parse(
      trimmed
        .replace(/'((?:[^'\\]|\\.)*)'/g, (_m, s: string) =>
          JSON.stringify(s.replace(/\\(.)/g, '$1'))
        )
        .replace(/\bTrue\b/g, 'true')
        .replace(/\bFalse\b/g, 'false')
        .replace(/\bNone\b/g, 'null')
    );
  } catch {
    return text;
  }
}

/**
 * The browser URL of a cluster's proxied dashboard.
 *
 * The server gives the path of the page under its base URL: with the base URL's own
 * path in front (`/user/alice/hybridnb/dashboard/ID/status`) or without it
 * (`hybridnb/dashboard/ID/status`). A path ending in `/` names the dashboard's root and
 * gets `page` added.
 */
export function dashboardUrl(
  dashboard: string,
  baseUrl: string,
  page = 'status'
): string {
  const base = new URL(baseUrl, 'http://localhost');
  let path = dashboard;
  if (/^https?:\/\//.test(path)) {
    path = new URL(path).pathname;
  }
  if (!path.startsWith(base.pathname)) {
    path = URLExt.join(base.pathname, path.replace(/^\/+/, ''));
  }
  return path.endsWith('/') ? path + page : path;
}

/** The last part of a path: `"a/b/c.ipynb"` → `"c.ipynb"`. */
export function basename(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}
