import { LabIcon } from '@jupyterlab/ui-components';

/** The sidebar's icon: three linked sites (themed through jp-icon3). */
export const hybridnbIcon = new LabIcon({
  name: 'hybridnb:icon',
  svgstr: `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2.5a3 3 0 0 1 1 5.83v2.1l5.02 2.9a3 3 0 1 1-1 1.73L12 12.16l-5.02 2.9a3 3 0 1 1-1-1.73L11 10.43v-2.1A3 3 0 0 1 12 2.5zm0 1.8a1.2 1.2 0 1 0 0 2.4 1.2 1.2 0 0 0 0-2.4zM5 15.3a1.2 1.2 0 1 0 0 2.4 1.2 1.2 0 0 0 0-2.4zm14 0a1.2 1.2 0 1 0 0 2.4 1.2 1.2 0 0 0 0-2.4z"/>
    <rect x="10.6" y="17.5" width="2.8" height="4" rx="0.6"/>
  </g>
</svg>`
});
