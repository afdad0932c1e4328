import { Dialog } from '@jupyterlab/apputils';

import { ApiError } from '../api';
import { h } from '../dom';
import { FieldErrors, FormBody, SubmitDialog, field, numberInput } from '../form';
import { settle } from './fake';

describe('FieldErrors', () => {
  function form() {
    const general = h('div');
    const errors = new FieldErrors(general);
    const workers = numberInput(2);
    const node = h(
      'form',
      {},
      field(errors, 'workers', 'Workers', workers),
      field(errors, 'adapt', 'Adapt', h('input')),
      general
    );
    return { errors, node, general, workers };
  }

  it('shows a server error next to the field it names', () => {
    const { errors, node, general, workers } = form();
    const shown = errors.show(new ApiError('must be >= 0', 400, 'workers'));
    expect(shown).toBe('workers');
    const message = node.querySelector('[data-field="workers"] .hybridnb-field-error');
    expect(message?.textContent).toBe('must be >= 0');
    expect(workers.getAttribute('aria-invalid')).toBe('true');
    expect(general.textContent).toBe('');
  });

  it('falls back to the parent field, then to the form', () => {
    const { errors, general } = form();
    expect(errors.resolve('adapt.maximum')).toBe('adapt');
    expect(errors.show(new ApiError('no such site', 404, 'site'))).toBeNull();
    expect(general.textContent).toBe('no such site');
    errors.show(new Error('network down'));
    expect(general.textContent).toBe('network down');
  });

  it('clears every message', () => {
    const { errors, node, workers } = form();
    errors.show(new ApiError('bad', 400, 'workers'));
    errors.clear();
    expect(node.querySelector('.hybridnb-field-error')?.textContent).toBe('');
    expect(workers.hasAttribute('aria-invalid')).toBe(false);
  });
});

describe('SubmitDialog', () => {
  afterEach(() => {
    Dialog.flush();
  });

  it('stays open with the error at its field until the request succeeds', async () => {
    const body = new FormBody<string>();
    const input = numberInput(-1);
    body.fields.append(field(body.errors, 'workers', 'Workers', input));
    const answers = [new ApiError('workers: must be >= 0', 400, 'workers'), 'ok'];
    const submitted: number[] = [];
    const dialog = new SubmitDialog<string>({
      title: 'Scale',
      body,
      accept: 'Scale',
      submit: async () => {
        submitted.push(Number(input.value));
        const next = answers.shift();
        if (next instanceof Error) {
          throw next;
        }
        return next as string;
      }
    });
    const result = dialog.launch();
    await settle();
    dialog.resolve(1);
    await settle();
    expect(submitted).toEqual([-1]);
    expect(dialog.isDisposed).toBe(false);
    expect(
      body.node.querySelector('[data-field="workers"] .hybridnb-field-error')
        ?.textContent
    ).toBe('workers: must be >= 0');
    input.value = '3';
    dialog.resolve(1);
    const { button, value } = await result;
    expect(button.accept).toBe(true);
    expect(value).toBe('ok');
    expect(submitted).toEqual([-1, 3]);
  });

  it('cancels without sending anything', async () => {
    let sent = false;
    const dialog = new SubmitDialog<string>({
      title: 'Scale',
      body: new FormBody<string>(),
      accept: 'Scale',
      submit: async () => {
        sent = true;
        return 'no';
      }
    });
    const result = dialog.launch();
    await settle();
    dialog.resolve(0);
    expect((await result).value).toBeNull();
    expect(sent).toBe(false);
  });
});
