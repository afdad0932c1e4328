import { freePath, newQuickstart, QUICKSTART } from '../quickstart';

/** The two calls of the contents API the launcher entry makes, on a map of files. */
function contents(existing: string[]) {
  const files = new Map<string, unknown>(existing.map(p => [p, {}]));
  return {
    files,
    get: async (path: string) => {
      if (!files.has(path)) {
        throw new Error('404');
      }
      return files.get(path);
    },
    save: async (path: string, model: { content: unknown }) => {
      files.set(path, model.content);
      return model;
    }
  } as any;
}

describe('the quickstart launcher entry', () => {
  it('carries notebooks/00_quickstart.ipynb without outputs', () => {
    const cells = QUICKSTART.cells as any[];
    expect(cells.length).toBeGreaterThan(3);
    expect(cells.some(c => String(c.source).includes('hybridnb'))).toBe(true);
    for (const cell of cells.filter(c => c.cell_type === 'code')) {
      expect(cell.outputs).toEqual([]);
    }
  });

  it('writes a new notebook under a free name', async () => {
    const manager = contents(['work/hybridnb-quickstart.ipynb']);
    expect(await freePath(manager, 'work/')).toBe('work/hybridnb-quickstart-1.ipynb');
    const path = await newQuickstart(manager, '');
    expect(path).toBe('hybridnb-quickstart.ipynb');
    expect(manager.files.get(path)).toBe(QUICKSTART);
  });
});
