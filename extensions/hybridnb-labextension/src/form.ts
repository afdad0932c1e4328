/**
 * Forms whose server errors land next to the field they name.
 *
 * The server answers bad input with `{"error": message, "field": name}` (400/404/409/
 * 422). {@link FieldErrors} shows the message under the input registered for that
 * field (`adapt.maximum` falls back to `adapt`, then to the form's own line), and
 * {@link SubmitDialog} keeps a dialog open until its request succeeds.
 */

import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiError, errorMessage } from './api';
import { h } from './dom';

/** Messages under fields, by the field names the server uses. */
export class FieldErrors {
  /** @param general - where messages about no registered field go. */
  constructor(readonly general: HTMLElement) {
    general.classList.add('hybridnb-form-error');
  }

  /** Show messages for `name` in `message` (and mark `input` invalid with them). */
  register(name: string, message: HTMLElement, input?: HTMLElement): void {
    message.classList.add('hybridnb-field-error');
    this._fields.set(name, { message, input });
  }

  /** Remove every message. */
  clear(): void {
    this.general.textContent = '';
    for (const { message, input } of this._fields.values()) {
      message.textContent = '';
      input?.removeAttribute('aria-invalid');
    }
  }

  /**
   * Show what went wrong: next to the named field when the error names one this form
   * has, else on the form's own line. Returns the field it was shown at, or `null`.
   */
  show(error: unknown): string | null {
    this.clear();
    const message = errorMessage(error);
    const field = error instanceof ApiError ? this.resolve(error.field) : null;
    if (field === null) {
      this.general.textContent = message;
      return null;
    }
    const target = this._fields.get(field)!;
    target.message.textContent = message;
    target.input?.setAttribute('aria-invalid', 'true');
    target.input?.focus();
    return field;
  }

  /** The registered field an error's field names: itself, or its nearest parent. */
  resolve(field: string | null): string | null {
    let name = field;
    while (name) {
      if (this._fields.has(name)) {
        return name;
      }
      const dot = name.lastIndexOf('.');
      name = dot > 0 ? name.slice(0, dot) : '';
    }
    return null;
  }

  private _fields = new Map<
    string,
    { message: HTMLElement; input?: HTMLElement }
  >();
}

/**
 * A labelled input with its message line; registered with `errors` under `name`.
 */
export function field(
  errors: FieldErrors,
  name: string,
  label: string,
  input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  help?: string
): HTMLDivElement {
  const id = `hybridnb-field-${Private.nextId++}`;
  input.id = id;
  input.name = name;
  const message = h('div', { role: 'alert' });
  errors.register(name, message, input);
  return h(
    'div',
    { class: 'hybridnb-field', 'data-field': name },
    h('label', { for: id }, label),
    input,
    help ? h('div', { class: 'hybridnb-field-help' }, help) : null,
    message
  );
}

/**
 * A whole-number input holding `value`. No `min`: the server checks ranges and says what
 * is wrong next to the field, where a browser-side `:invalid` would only grey out the
 * dialog's button.
 */
export function numberInput(value: number | null | undefined): HTMLInputElement {
  const input = h('input', { type: 'number', step: 1, class: 'jp-mod-styled' });
  if (value !== null && value !== undefined) {
    input.value = String(value);
  }
  return input;
}

/** The value of a number input, or `null` when empty. */
export function numberValue(input: HTMLInputElement): number | null {
  const text = input.value.trim();
  return text === '' ? null : Number(text);
}

/** The body of a {@link SubmitDialog}: fields, their messages, and the answer. */
export class FormBody<T> extends Widget implements Dialog.IBodyWidget<T | null> {
  constructor() {
    super();
    this.addClass('hybridnb-form');
    const general = h('div', { role: 'alert' });
    this.errors = new FieldErrors(general);
    this.fields = h('div', { class: 'hybridnb-form-fields' });
    this.node.append(this.fields, general);
  }

  /** Where subclasses put their fields. */
  readonly fields: HTMLDivElement;
  readonly errors: FieldErrors;
  /** The successful answer of the dialog's request. */
  result: T | null = null;

  getValue(): T | null {
    return this.result;
  }
}

export interface ISubmitOptions<T> {
  title: string;
  body: FormBody<T>;
  /** The accepting button's label ("Start", "Scale"...). */
  accept: string;
  /** The request; its `ApiError` is shown in the form and the dialog stays open. */
  submit: () => Promise<T>;
  danger?: boolean;
}

/**
 * A dialog that sends its request when accepted and closes only when it succeeds; a
 * failure is shown next to the field it names and the user can correct it.
 */
export class SubmitDialog<T> extends Dialog<T | null> {
  constructor(options: ISubmitOptions<T>) {
    const accept = options.danger
      ? Dialog.warnButton({ label: options.accept })
      : Dialog.okButton({ label: options.accept });
    super({
      title: options.title,
      body: options.body,
      buttons: [Dialog.cancelButton(), accept],
      defaultButton: 1,
      focusNodeSelector: 'input, select'
    });
    this.addClass('hybridnb-dialog');
    this._options = options;
  }

  /** Whether a request is on its way. */
  get busy(): boolean {
    return this._busy;
  }

  resolve(index?: number): void {
    const accepted = (index ?? 1) === 1;
    if (!accepted || this._done) {
      super.resolve(index);
      return;
    }
    if (this._busy) {
      return;
    }
    void this._submit();
  }

  private async _submit(): Promise<void> {
    const body = this._options.body;
    const buttons = this.node.querySelectorAll<HTMLButtonElement>(
      '.jp-Dialog-footer button'
    );
    const accept = buttons[buttons.length - 1];
    this._busy = true;
    body.errors.clear();
    if (accept) {
      accept.disabled = true;
    }
    try {
      body.result = await this._options.submit();
      this._done = true;
      super.resolve(1);
    } catch (error) {
      body.errors.show(error);
    } finally {
      this._busy = false;
      if (accept) {
        accept.disabled = false;
      }
    }
  }

  private _options: ISubmitOptions<T>;
  private _busy = false;
  private _done = false;
}

namespace Private {
  export let nextId = 0;
}
