/**
 * A stand-in for the server in unit tests: answers by "METHOD route" from a table, and
 * records what was asked. (The real server is tested by pytest and the browser test.)
 */
import { ServerConnection } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';

import { ApiError, HybridnbAPI } from '../api';
import { ISectionContext } from '../section';

type Answer = unknown | ((body: unknown) => unknown);

export class FakeAPI extends HybridnbAPI {
  constructor(readonly answers: { [route: string]: Answer } = {}) {
    super(ServerConnection.makeSettings({ baseUrl: 'http://localhost/' }));
  }

  readonly calls: { route: string; body: unknown }[] = [];

  async request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    const route = `${init.method ?? 'GET'} ${endpoint}`;
    const body = init.body ? JSON.parse(String(init.body)) : undefined;
    this.calls.push({ route, body });
    if (!(route in this.answers)) {
      throw new ApiError(`no answer for ${route}`, 404);
    }
    const answer = this.answers[route];
    const value = typeof answer === 'function' ? answer(body) : answer;
    if (value instanceof Error) {
      throw value;
    }
    return value as T;
  }
}

export function context(
  api: FakeAPI,
  commands = new CommandRegistry()
): ISectionContext {
  return {
    api,
    commands,
    interval: () => 60_000,
    defaultSite: () => ''
  };
}

/** Let promises and timers scheduled now run. */
export async function settle(ms = 0): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms));
}
