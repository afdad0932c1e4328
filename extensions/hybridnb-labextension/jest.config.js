const jestJupyterLab = require('@jupyterlab/testutils/lib/jest-config');

// ES modules jest must transform: @jupyterlab/testing's list, plus JupyterLab itself.
const esModules = [
  '@codemirror',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@jupyter/ydoc',
  '@jupyterlab/',
  '@marijn',
  '@microsoft',
  'color',
  'exenv-es6',
  'lib0',
  'marked',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  collectCoverage: false,
  reporters: ['default'],
  testRegex: 'src/.*/.*.spec.ts[x]?$',
  // tsc type-checks the sources in the build; here ts-jest only transpiles (much faster).
  transform: {
    ...baseConfig.transform,
    '^.+\\.tsx?$': [
      'ts-jest/legacy',
      { tsconfig: './tsconfig.test.json', isolatedModules: true }
    ]
  },
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
