/**
 * A tiny DOM builder: the sidebar is plain elements, redrawn when its data changes.
 */

import type { LabIcon } from '@jupyterlab/ui-components';

import { badgeKind } from './format';

type Child = Node | string | null | undefined | false;
type Attributes = { [name: string]: string | number | boolean | undefined };

/**
 * `h('td', {class: 'x'}, 'text', child)`: an element with attributes and children.
 * `false`/`null`/`undefined` children are skipped; booleans set or omit attributes.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) {
      continue;
    }
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.append(child);
  }
  return element;
}

/** A coloured badge for a state (`running`, `failed`, `firing`...). */
export function badge(state: string): HTMLSpanElement {
  return h(
    'span',
    {
      class: `hybridnb-badge hybridnb-badge-${badgeKind(state)}`,
      'data-state': state
    },
    state
  );
}

export interface IButtonOptions {
  /** What the button does, for `data-action` (tests) and the class. */
  action: string;
  label?: string;
  icon?: LabIcon;
  title: string;
  disabled?: boolean;
  /** A destructive action: drawn in the error colour. */
  danger?: boolean;
  onClick: () => void;
}

/** A small sidebar button: an icon, a label or both, with a tooltip. */
export function button(options: IButtonOptions): HTMLButtonElement {
  const classes = ['hybridnb-button'];
  if (options.danger) {
    classes.push('hybridnb-mod-danger');
  }
  if (!options.label) {
    classes.push('hybridnb-mod-icon');
  }
  const node = h('button', {
    class: classes.join(' '),
    type: 'button',
    title: options.title,
    'aria-label': options.title,
    'data-action': options.action,
    disabled: !!options.disabled
  });
  if (options.icon) {
    node.append(
      options.icon.element({ tag: 'span', className: 'hybridnb-button-icon' })
    );
  }
  if (options.label) {
    node.append(h('span', {}, options.label));
  }
  node.addEventListener('click', event => {
    event.stopPropagation();
    if (!node.disabled) {
      options.onClick();
    }
  });
  return node;
}

/** An inline SVG sparkline of the last values (oldest first). */
export function sparkline(
  values: number[],
  width = 64,
  height = 16
): SVGSVGElement | null {
  if (values.length < 2) {
    return null;
  }
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'hybridnb-sparkline');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const points = values.map((v, i) => {
    const x = (i / (values.length - 1)) * (width - 2) + 1;
    const y = height - 1 - ((v - low) / span) * (height - 2);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points.join(' '));
  svg.append(line);
  return svg;
}
