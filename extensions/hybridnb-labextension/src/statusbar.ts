/**
 * The status-bar item: what is running (clusters, endpoints, jobs) and alerts firing,
 * from the `summary` route; a click opens the sidebar.
 */

import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { HybridnbAPI } from './api';
import { h } from './dom';
import { hybridnbIcon } from './icon';
import type { Summary } from './models';
import { MAX_BACKOFF } from './section';

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The item's text for a summary. */
export function summaryText(s: Summary): string {
  const parts = [plural(s.clusters, 'cluster'), plural(s.endpoints, 'endpoint')];
  if (s.runs) {
    parts.push(plural(s.runs, 'run'));
  }
  if (s.jobs_running || s.jobs_queued) {
    parts.push(`${s.jobs_running + s.jobs_queued} job${s.jobs_running + s.jobs_queued === 1 ? '' : 's'}`);
  }
  return parts.join(' · ');
}

export class StatusItem extends Widget {
  constructor(
    private _api: HybridnbAPI,
    interval: number,
    onClick: () => void
  ) {
    super();
    this.addClass('hybridnb-statusbar');
    this.node.title = 'hybridnb: click to open the sidebar';
    this._text = h('span', { class: 'hybridnb-statusbar-text' }, 'hybridnb');
    this._alerts = h('span', { class: 'hybridnb-statusbar-alerts' });
    this.node.append(
      hybridnbIcon.element({ tag: 'span', className: 'hybridnb-statusbar-icon' }),
      this._text,
      this._alerts
    );
    this.node.addEventListener('click', onClick);
    this.poll = new Poll({
      factory: () => this._tick(),
      frequency: { interval, backoff: true, max: MAX_BACKOFF },
      name: 'hybridnb:summary',
      standby: 'when-hidden'
    });
  }

  readonly poll: Poll;

  setInterval(ms: number): void {
    this.poll.frequency = { interval: ms, backoff: true, max: MAX_BACKOFF };
  }

  /** Draw a summary (the poll calls this). */
  setSummary(s: Summary): void {
    this._text.textContent = summaryText(s);
    this._alerts.textContent = s.alerts_firing
      ? `${plural(s.alerts_firing, 'alert')} firing`
      : '';
    this.toggleClass('hybridnb-mod-alerting', s.alerts_firing > 0);
    this.toggleClass('hybridnb-mod-offline', false);
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  private async _tick(): Promise<void> {
    try {
      this.setSummary(await this._api.summary());
    } catch (error) {
      this._text.textContent = 'hybridnb: offline';
      this._alerts.textContent = '';
      this.toggleClass('hybridnb-mod-offline', true);
      throw error;
    }
  }

  private _text: HTMLSpanElement;
  private _alerts: HTMLSpanElement;
}
