/**
 * Insert code into a notebook at once: the `hybridnb:insert-cell` command, and the
 * `hybridnb.insert-cell` comm target that the kernel side (hybridnb/widgets/cells.py)
 * opens when a panel's "Insert cell" is pressed.
 *
 * Protocol: the kernel opens a comm on {@link TARGET} with `{"code": "..."}`; we insert a
 * code cell below the active cell of the notebook that runs that kernel, answer
 * `{"inserted": true}` (or `{"error": "..."}`) and close the comm. A kernel whose comm is
 * closed unanswered (JupyterLab without this extension) falls back to IPython's
 * `set_next_input`.
 */

import type { Notebook, NotebookPanel, INotebookTracker } from '@jupyterlab/notebook';
import { NotebookActions } from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';

/** The comm target registered on every kernel of a tracked notebook. */
export const TARGET = 'hybridnb.insert-cell';

/** Insert a cell holding `code` below the active cell of `notebook`, and select it. */
export function insertBelow(
  notebook: Notebook,
  code: string,
  cellType: 'code' | 'markdown' = 'code'
): void {
  if (!notebook.model) {
    throw new Error('the notebook is not loaded yet');
  }
  NotebookActions.insertBelow(notebook);
  if (cellType !== 'code') {
    NotebookActions.changeCellType(notebook, cellType);
  }
  const cell = notebook.activeCell;
  if (!cell) {
    throw new Error('no cell was inserted');
  }
  cell.model.sharedModel.setSource(code);
  void notebook.scrollToItem(notebook.activeCellIndex);
}

/** The kernel id a notebook panel runs, if any. */
function kernelId(panel: NotebookPanel): string | undefined {
  return panel.sessionContext.session?.kernel?.id;
}

/**
 * The notebook to insert into for a kernel: the current notebook if it runs that kernel,
 * otherwise the first open one that does.
 */
export function notebookFor(
  tracker: INotebookTracker,
  id: string
): NotebookPanel | null {
  const current = tracker.currentWidget;
  if (current && kernelId(current) === id) {
    return current;
  }
  return tracker.find(panel => kernelId(panel) === id) ?? null;
}

/**
 * Registers {@link TARGET} on the kernel of every notebook the tracker knows, now and
 * when kernels change, and answers the kernel side's insert requests.
 */
export class InsertTarget {
  constructor(private _tracker: INotebookTracker) {
    _tracker.forEach(panel => this._watch(panel));
    _tracker.widgetAdded.connect((_, panel) => this._watch(panel));
  }

  /** How many inserts came from kernels (for tests and the curious). */
  get received(): number {
    return this._received;
  }

  private _watch(panel: NotebookPanel): void {
    const context = panel.sessionContext;
    context.kernelChanged.connect((_, change) => {
      if (change.newValue) {
        this._register(change.newValue);
      }
    });
    if (context.session?.kernel) {
      this._register(context.session.kernel);
    }
  }

  private _register(kernel: Kernel.IKernelConnection): void {
    // Only a connection that handles comms hears comm_open; register once per connection.
    if (!kernel.handleComms || this._kernels.has(kernel)) {
      return;
    }
    this._kernels.add(kernel);
    kernel.registerCommTarget(TARGET, (comm, msg) => this._open(kernel, comm, msg));
    kernel.disposed.connect(() => this._kernels.delete(kernel));
  }

  private _open(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    msg: KernelMessage.ICommOpenMsg
  ): void {
    // Two connections to one kernel both hear the open: only the first one answers.
    if (this._seen.has(comm.commId)) {
      return;
    }
    this._seen.add(comm.commId);
    this._received += 1;
    const data = (msg.content.data ?? {}) as { code?: unknown };
    let answer: { inserted: true } | { error: string };
    const panel = notebookFor(this._tracker, kernel.id);
    if (typeof data.code !== 'string') {
      answer = { error: 'no code to insert' };
    } else if (!panel) {
      answer = { error: 'no open notebook runs this kernel' };
    } else {
      try {
        insertBelow(panel.content, data.code);
        answer = { inserted: true };
      } catch (error) {
        answer = { error: String(error) };
      }
    }
    comm.send(answer);
    comm.close();
  }

  private _kernels = new Set<Kernel.IKernelConnection>();
  private _seen = new Set<string>();
  private _received = 0;
}
