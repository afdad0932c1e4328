/**
 * The client against a real HTTP server on loopback that answers as the server
 * extension does (JSON errors with a field, 404 pages, files).
 */
import * as http from 'http';
import { AddressInfo } from 'net';

import { ServerConnection } from '@jupyterlab/services';

import { ApiError, HybridnbAPI } from '../api';

interface ISeen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe('HybridnbAPI', () => {
  let server: http.Server;
  let api: HybridnbAPI;
  const seen: ISeen[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', chunk => (body += chunk));
      req.on('end', () => {
        // makeRequest adds a cache-busting query to GETs: route on the path.
        req.url = (req.url ?? '').split('?')[0];
        seen.push({
          method: req.method ?? '',
          url: req.url,
          headers: req.headers,
          body
        });
        const json = (status: number, data: unknown) => {
          res.writeHead(status, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify(data));
        };
        if (req.url === '/lab/hybridnb/clusters' && req.method === 'POST') {
          const site = JSON.parse(body).site;
          if (site !== 'local') {
            return json(400, { error: `unknown site '${site}'`, field: 'site' });
          }
          return json(201, { id: 'c1', name: 'local-1', status: 'starting' });
        }
        if (req.url === '/lab/hybridnb/clusters/c%2F1' && req.method === 'PATCH') {
          return json(400, {
            error: 'workers: must be >= 0',
            field: 'workers'
          });
        }
        if (req.url === '/lab/hybridnb/jobs/j1/output') {
          res.writeHead(200, { 'Content-Type': 'application/x-ipynb+json' });
          return res.end('{"cells": []}');
        }
        if (req.url === '/lab/hybridnb/summary') {
          return json(200, { clusters: 2 });
        }
        res.writeHead(404, { 'Content-Type': 'text/html' });
        res.end('<html>404: Not Found</html>');
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    document.cookie = '_xsrf=xsrf-value';
    api = new HybridnbAPI(
      ServerConnection.makeSettings({
        baseUrl: `http://127.0.0.1:${port}/lab/`,
        wsUrl: `ws://127.0.0.1:${port}/lab/`,
        token: 'secret-token'
      })
    );
  });

  afterAll(async () => {
    await new Promise(resolve => server.close(resolve));
  });

  beforeEach(() => {
    seen.length = 0;
  });

  it('calls routes under {base_url}hybridnb/ with the token and XSRF', async () => {
    const summary = await api.summary();
    expect(summary).toEqual({ clusters: 2 });
    expect(seen[0].url).toBe('/lab/hybridnb/summary');
    expect(seen[0].headers.authorization).toBe('token secret-token');
  });

  it('sends JSON bodies and reads a 201', async () => {
    const cluster = await api.startCluster({ site: 'local', workers: 2 });
    expect(cluster.id).toBe('c1');
    expect(seen[0].method).toBe('POST');
    expect(seen[0].headers['content-type']).toBe('application/json');
    expect(seen[0].headers['x-xsrftoken']).toBe('xsrf-value');
    expect(JSON.parse(seen[0].body)).toEqual({ site: 'local', workers: 2 });
  });

  it('turns {"error", "field"} into an ApiError naming the field', async () => {
    const error = await api.startCluster({ site: 'mars' }).catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(400);
    expect(error.field).toBe('site');
    expect(error.message).toBe("unknown site 'mars'");
  });

  it('escapes ids in paths', async () => {
    const error = await api.scaleCluster('c/1', { workers: -1 }).catch(e => e);
    expect(seen[0].url).toBe('/lab/hybridnb/clusters/c%2F1');
    expect(error.field).toBe('workers');
  });

  it('says the server extension is missing on a bare 404', async () => {
    const error = await api.runs().catch(e => e);
    expect(error.status).toBe(404);
    expect(error.message).toMatch(/server extension/);
  });

  it('downloads job files', async () => {
    const blob = await api.jobFile('j1', 'output');
    expect(await blob.text()).toBe('{"cells": []}');
    const error = await api.jobFile('j2', 'report').catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
  });

  it('reports an unreachable server with status 0', async () => {
    const dead = new HybridnbAPI(
      ServerConnection.makeSettings({
        baseUrl: 'http://127.0.0.1:9/',
        wsUrl: 'ws://127.0.0.1:9/'
      })
    );
    const error = await dead.sites().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/cannot reach the server/);
  });
});
