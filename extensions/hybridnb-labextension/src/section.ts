/**
 * One collapsible part of the sidebar (Sites, Clusters, ...), kept fresh by a poll.
 *
 * Each section polls its own route with `@lumino/polling`'s `Poll`: at the configured
 * interval while it is shown, backing off (to at most a minute) while its route fails,
 * and standing by while it is collapsed, the sidebar is hidden or the browser tab is
 * not visible. A failure is shown above the last good data, which stays (dimmed).
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { HybridnbAPI, errorMessage } from './api';
import { h } from './dom';

/** The longest wait between polls of a failing route, in ms. */
export const MAX_BACKOFF = 60_000;

/** What every section shares: the API, the app's commands, the settings. */
export interface ISectionContext {
  api: HybridnbAPI;
  commands: CommandRegistry;
  /** Poll interval in ms (from the settings). */
  interval(): number;
  /** The site to preselect in forms, or '' (from the settings). */
  defaultSite(): string;
}

export interface ISectionOptions {
  /** The section's key: `data-section`, the poll's name. */
  id: string;
  title: string;
  context: ISectionContext;
  /** Shown when there is nothing to list. */
  empty: string;
  /** Start collapsed. */
  collapsed?: boolean;
}

/** A sidebar section listing `T`s. */
export abstract class Section<T> extends Widget {
  constructor(options: ISectionOptions) {
    super({ node: document.createElement('section') });
    this.addClass('hybridnb-section');
    this.id = `hybridnb-section-${options.id}`;
    this.node.dataset.section = options.id;
    this.context = options.context;
    this._empty = options.empty;
    this._caret = h('span', { class: 'hybridnb-section-caret' });
    this._count = h('span', { class: 'hybridnb-section-count' });
    this._header = h(
      'header',
      {
        class: 'hybridnb-section-header',
        role: 'button',
        tabindex: 0,
        'aria-expanded': 'true'
      },
      this._caret,
      h('h3', { class: 'hybridnb-section-title' }, options.title),
      this._count
    );
    this._header.addEventListener('click', () => this.toggle());
    this._header.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.toggle();
      }
    });
    this.tools = h('div', { class: 'hybridnb-section-tools' });
    this._error = h('div', { class: 'hybridnb-section-error', role: 'alert' });
    this._content = h('div', { class: 'hybridnb-section-content' });
    this._body = h(
      'div',
      { class: 'hybridnb-section-body' },
      this.tools,
      this._error,
      this._content
    );
    this.node.append(this._header, this._body);
    this.poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: {
        interval: this.context.interval(),
        backoff: true,
        max: MAX_BACKOFF
      },
      name: `hybridnb:${options.id}`,
      standby: () => this.standby()
    });
    this.setCollapsed(!!options.collapsed);
  }

  readonly context: ISectionContext;
  /** Forms and buttons above the list (subclasses fill it). */
  readonly tools: HTMLDivElement;
  readonly poll: Poll;

  /** The items of the last successful poll. */
  get items(): readonly T[] {
    return this._items;
  }

  /** A signal emitted after each successful refresh, with the items. */
  get refreshed(): ISignal<this, readonly T[]> {
    return this._refreshed;
  }

  get collapsed(): boolean {
    return this._collapsed;
  }

  /** Whether the poll stands by now: collapsed, hidden, or (browser) tab hidden. */
  standby(): boolean | Poll.Standby {
    if (this._collapsed || !this.isVisible) {
      return true;
    }
    return 'when-hidden';
  }

  toggle(): void {
    this.setCollapsed(!this._collapsed);
  }

  setCollapsed(collapsed: boolean): void {
    this._collapsed = collapsed;
    this.toggleClass('hybridnb-mod-collapsed', collapsed);
    this._header.setAttribute('aria-expanded', String(!collapsed));
    this._caret.replaceChildren(
      (collapsed ? caretRightIcon : caretDownIcon).element({ tag: 'span' })
    );
    if (!collapsed) {
      void this.refresh();
    }
  }

  /** Poll now (and resolve once the new data is drawn or the request failed). */
  async refresh(): Promise<void> {
    if (this.poll.isDisposed) {
      return;
    }
    if (this.poll.state.phase === 'constructed') {
      await this.poll.start();
    } else {
      await this.poll.refresh();
    }
    try {
      await this.poll.tick;
    } catch {
      // The poll was disposed while we waited (the sidebar closed): nothing to draw.
    }
  }

  /** Follow a new poll interval (the settings changed). */
  setInterval(ms: number): void {
    this.poll.frequency = { interval: ms, backoff: true, max: MAX_BACKOFF };
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.poll.dispose();
    super.dispose();
  }

  /** Fetch the items (rejects when the route fails). */
  protected abstract fetch(): Promise<T[]>;

  /** Draw the items; called only when they changed (or {@link redraw} asks). */
  protected abstract render(items: readonly T[]): Node;

  /** The header's count: how many items are worth counting (default: all). */
  protected count(items: readonly T[]): number {
    return items.length;
  }

  /** Draw the current items again (a local state such as "followed" changed). */
  protected redraw(): void {
    this._draw(this._items);
  }

  /**
   * Ask before something destructive; resolves `true` when the user confirms.
   */
  protected async confirm(
    title: string,
    body: string,
    label: string
  ): Promise<boolean> {
    const result = await showDialog({
      title,
      body,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })],
      defaultButton: 0
    });
    return result.button.accept;
  }

  /** Run an action; its failure shows on the section's error line. */
  protected async act(what: string, action: () => Promise<unknown>) {
    try {
      await action();
      this._error.textContent = '';
    } catch (error) {
      this._error.textContent = `${what}: ${errorMessage(error)}`;
    }
    await this.refresh();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this._collapsed) {
      void this.refresh();
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.poll.state.phase === 'constructed') {
      void this.poll.start();
    }
  }

  private async _tick(): Promise<void> {
    let items: T[];
    try {
      items = await this.fetch();
    } catch (error) {
      this._error.textContent = `${errorMessage(error)} (retrying)`;
      this._content.classList.add('hybridnb-mod-stale');
      throw error; // the poll backs off
    }
    this._error.textContent = '';
    this._content.classList.remove('hybridnb-mod-stale');
    const key = JSON.stringify(items);
    if (key !== this._key) {
      this._key = key;
      this._items = items;
      this._draw(items);
    }
    this._refreshed.emit(this._items);
  }

  private _draw(items: readonly T[]): void {
    const n = this.count(items);
    this._count.textContent = n ? String(n) : '';
    this._content.replaceChildren(
      items.length
        ? this.render(items)
        : h('div', { class: 'hybridnb-empty' }, this._empty)
    );
  }

  private _collapsed = false;
  private _items: T[] = [];
  private _key = '';
  private _empty: string;
  private _caret: HTMLSpanElement;
  private _count: HTMLSpanElement;
  private _header: HTMLElement;
  private _error: HTMLDivElement;
  private _content: HTMLDivElement;
  private _body: HTMLDivElement;
  private _refreshed = new Signal<this, readonly T[]>(this);
}

/** A compact list: one row per item, its name and state on the first line. */
export function table(rows: HTMLTableRowElement[]): HTMLTableElement {
  return h('table', { class: 'hybridnb-table' }, h('tbody', {}, ...rows));
}

export interface IRowOptions {
  id: string;
  name: string;
  /** Short facts, joined with " · ". */
  details: (string | null | undefined | false)[];
  state: HTMLElement;
  /** Buttons on their own line below. */
  actions?: HTMLElement[];
  /** Small icon buttons at the end of the first line. */
  tools?: HTMLElement[];
  /** More below the details (an error). */
  extra?: (Node | null)[];
  /** More below the actions (a followed job's plan and log). */
  below?: (Node | null)[];
  /** Figures on the first line, before the state (a sparkline). */
  aside?: (Node | null)[];
  dimmed?: boolean;
}

/** One item of a {@link table}: the full width of the sidebar, for narrow sidebars. */
export function row(options: IRowOptions): HTMLTableRowElement {
  const details = options.details.filter(Boolean).join(' · ');
  return h(
    'tr',
    {
      class: `hybridnb-row${options.dimmed ? ' hybridnb-mod-dimmed' : ''}`,
      'data-id': options.id,
      'data-name': options.name
    },
    h(
      'td',
      { class: 'hybridnb-cell' },
      h(
        'div',
        { class: 'hybridnb-row-head' },
        h('span', { class: 'hybridnb-name', title: options.name }, options.name),
        ...(options.aside ?? []),
        options.state,
        ...(options.tools ?? [])
      ),
      details ? h('div', { class: 'hybridnb-details' }, details) : null,
      ...(options.extra ?? []),
      options.actions?.length
        ? h('div', { class: 'hybridnb-actions' }, ...options.actions)
        : null,
      ...(options.below ?? [])
    )
  );
}
