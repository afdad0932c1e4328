/**
 * The launcher's "hybridnb quickstart": a new notebook holding notebooks/00_quickstart.ipynb
 * (copied into the bundle at build time by scripts/quickstart.js), through the contents API.
 */

import type { Contents } from '@jupyterlab/services';
import type { PartialJSONObject } from '@lumino/coreutils';

import quickstart from './quickstart.json';

/** The notebook the launcher copies. */
export const QUICKSTART = quickstart as unknown as PartialJSONObject;

/** `dir/hybridnb-quickstart.ipynb`, or `-1`, `-2`... when that exists. */
export async function freePath(
  contents: Contents.IManager,
  dir: string,
  stem = 'hybridnb-quickstart'
): Promise<string> {
  const prefix = dir ? `${dir.replace(/\/+$/, '')}/` : '';
  for (let i = 0; i < 1000; i++) {
    const path = `${prefix}${stem}${i ? `-${i}` : ''}.ipynb`;
    try {
      await contents.get(path, { content: false });
    } catch {
      return path; // not there (404): free
    }
  }
  throw new Error(`no free name for ${stem}.ipynb in ${dir || 'the root'}`);
}

/** Write a new quickstart notebook in `dir`; resolves with its path. */
export async function newQuickstart(
  contents: Contents.IManager,
  dir: string
): Promise<string> {
  const path = await freePath(contents, dir);
  await contents.save(path, {
    type: 'notebook',
    format: 'json',
    content: QUICKSTART
  });
  return path;
}
