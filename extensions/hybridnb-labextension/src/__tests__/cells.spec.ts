import { NBTestUtils } from '@jupyterlab/notebook/lib/testutils';
import { Signal } from '@lumino/signaling';

import { InsertTarget, TARGET, insertBelow } from '../cells';

// NBTestUtils' notebooks, outside a document manager, make Yjs warn on every cell: the
// same two lines, hundreds of times. Everything else still reaches the console.
const warn = console.warn;
beforeAll(() => {
  jest.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
    const text = String(args[0]);
    if (!text.includes('Add Yjs type') && !text.includes('Not same Y.Doc')) {
      warn(...args);
    }
  });
});
afterAll(() => jest.restoreAllMocks());

describe('insertBelow', () => {
  it('puts a code cell holding the code below the active cell', () => {
    const notebook = NBTestUtils.createNotebook();
    NBTestUtils.populateNotebook(notebook);
    const before = notebook.widgets.length;
    notebook.activeCellIndex = 1;
    insertBelow(notebook, 'c = hybridnb.connect("x")');
    expect(notebook.widgets.length).toBe(before + 1);
    expect(notebook.activeCellIndex).toBe(2);
    const cell = notebook.widgets[2];
    expect(cell.model.type).toBe('code');
    expect(cell.model.sharedModel.getSource()).toBe('c = hybridnb.connect("x")');
    notebook.dispose();
  });
});

/** The parts of a kernel connection and notebook tracker InsertTarget uses. */
function fakeKernel(id: string) {
  const targets = new Map<string, (comm: any, msg: any) => void>();
  return {
    id,
    handleComms: true,
    disposed: new Signal<any, void>({}),
    registerCommTarget: (name: string, cb: (comm: any, msg: any) => void) =>
      targets.set(name, cb),
    targets
  };
}

function fakeComm(commId: string) {
  return {
    commId,
    sent: [] as unknown[],
    closed: false,
    send(data: unknown) {
      this.sent.push(data);
    },
    close() {
      this.closed = true;
    }
  };
}

describe('InsertTarget', () => {
  function setup() {
    const notebook = NBTestUtils.createNotebook();
    NBTestUtils.populateNotebook(notebook);
    const kernel = fakeKernel('k1');
    const panel: any = {
      content: notebook,
      sessionContext: {
        session: { kernel },
        kernelChanged: new Signal<any, any>({})
      }
    };
    const tracker: any = {
      currentWidget: panel,
      forEach: (fn: (p: any) => void) => fn(panel),
      find: (fn: (p: any) => boolean) => (fn(panel) ? panel : undefined),
      widgetAdded: new Signal<any, any>({})
    };
    const target = new InsertTarget(tracker);
    return { notebook, kernel, target, panel };
  }

  it('inserts the code a kernel sends, answers and closes', () => {
    const { notebook, kernel, target } = setup();
    const open = kernel.targets.get(TARGET)!;
    expect(open).toBeDefined();
    const before = notebook.widgets.length;
    const comm = fakeComm('m1');
    open(comm, { content: { data: { code: 'x = 1' } } });
    expect(notebook.widgets.length).toBe(before + 1);
    expect(notebook.activeCell?.model.sharedModel.getSource()).toBe('x = 1');
    expect(comm.sent).toEqual([{ inserted: true }]);
    expect(comm.closed).toBe(true);
    // A second connection to the same kernel hears the same open: one insert only.
    open(comm, { content: { data: { code: 'x = 1' } } });
    expect(notebook.widgets.length).toBe(before + 1);
    expect(target.received).toBe(1);
    notebook.dispose();
  });

  it('answers an error when no notebook runs that kernel', () => {
    const { kernel, notebook, panel } = setup();
    const open = kernel.targets.get(TARGET)!;
    // The notebook moved to another kernel; the old one still asks.
    panel.sessionContext.session.kernel = fakeKernel('k2');
    const before = notebook.widgets.length;
    const comm = fakeComm('m2');
    open(comm, { content: { data: { code: 'y = 2' } } });
    expect(comm.sent).toEqual([{ error: 'no open notebook runs this kernel' }]);
    expect(comm.closed).toBe(true);
    expect(notebook.widgets.length).toBe(before);
    notebook.dispose();
  });
});
