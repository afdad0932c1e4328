/**
 * The client of the hybridnb server extension: one method per route of JUPYTER-API.md.
 *
 * Requests go through `ServerConnection.makeRequest`, which adds the user's token and the
 * XSRF header as Jupyter Server expects them, so the routes work behind JupyterHub's
 * `/user/NAME/` prefix as they do on a laptop.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  AlertList,
  Cluster,
  ClusterCreate,
  ClusterList,
  ClusterPatch,
  Endpoint,
  EndpointList,
  EndpointPatch,
  Job,
  JobCreate,
  JobDetail,
  JobList,
  MetricsAnswer,
  NotebookInfo,
  PlanAnswer,
  PlanRequest,
  Run,
  RunList,
  SiteList,
  Summary
} from './models';

/** The URL path segment every route lives under. */
export const NAMESPACE = 'hybridnb';

/**
 * A failed request: the server's message, its HTTP status (0: the server could not be
 * reached) and the request field the message is about, if it names one.
 */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The message to show for anything a request may throw. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/**
 * Call one route and return its JSON answer (`null` for an empty body).
 *
 * Errors become an {@link ApiError}: the server's `{"error", "field"}` when it sent one,
 * otherwise the status line, with a hint when the routes are missing altogether.
 */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, NAMESPACE, endpoint);
  const headers = new Headers(init.headers);
  if (init.body !== undefined && !headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json');
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      url,
      { ...init, headers },
      settings
    );
  } catch (error) {
    throw new ApiError(`cannot reach the server: ${errorMessage(error)}`, 0);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    throw toError(response, data);
  }
  return data as T;
}

function toError(response: Response, data: unknown): ApiError {
  if (data && typeof data === 'object' && 'error' in data) {
    const body = data as { error: unknown; field?: unknown };
    const field = typeof body.field === 'string' ? body.field : null;
    return new ApiError(String(body.error), response.status, field);
  }
  if (response.status === 404 && typeof data !== 'object') {
    return new ApiError(
      'the hybridnb server extension does not answer (404): check ' +
        '`jupyter server extension list` and restart JupyterLab',
      404
    );
  }
  const reason = response.statusText || 'request failed';
  return new ApiError(`${response.status} ${reason}`, response.status);
}

function json(method: string, body?: unknown): RequestInit {
  return body === undefined
    ? { method }
    : { method, body: JSON.stringify(body) };
}

function id(value: string): string {
  return encodeURIComponent(value);
}

/** Every route of the server extension, typed. */
export class HybridnbAPI {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(endpoint, init, this.settings);
  }

  sites(): Promise<SiteList> {
    return this.request('sites');
  }

  plan(body: PlanRequest): Promise<PlanAnswer> {
    return this.request('plan', json('POST', body));
  }

  clusters(): Promise<ClusterList> {
    return this.request('clusters');
  }

  startCluster(body: ClusterCreate): Promise<Cluster> {
    return this.request('clusters', json('POST', body));
  }

  scaleCluster(clusterId: string, body: ClusterPatch): Promise<Cluster> {
    return this.request(`clusters/${id(clusterId)}`, json('PATCH', body));
  }

  stopCluster(clusterId: string): Promise<Cluster> {
    return this.request(`clusters/${id(clusterId)}`, json('DELETE'));
  }

  runs(): Promise<RunList> {
    return this.request('runs');
  }

  stopRun(runId: string): Promise<Run> {
    return this.request(`runs/${id(runId)}`, json('DELETE'));
  }

  endpoints(): Promise<EndpointList> {
    return this.request('endpoints');
  }

  patchEndpoint(endpointId: string, body: EndpointPatch): Promise<Endpoint> {
    return this.request(`endpoints/${id(endpointId)}`, json('PATCH', body));
  }

  stopEndpoint(endpointId: string): Promise<Endpoint> {
    return this.request(`endpoints/${id(endpointId)}`, json('DELETE'));
  }

  jobs(): Promise<JobList> {
    return this.request('jobs');
  }

  job(jobId: string): Promise<JobDetail> {
    return this.request(`jobs/${id(jobId)}`);
  }

  submitJob(body: JobCreate): Promise<Job> {
    return this.request('jobs', json('POST', body));
  }

  cancelJob(jobId: string): Promise<Job> {
    return this.request(`jobs/${id(jobId)}`, json('DELETE'));
  }

  /** The executed notebook or the HTML report of a job, as a Blob. */
  async jobFile(jobId: string, what: 'output' | 'report'): Promise<Blob> {
    const url = URLExt.join(
      this.settings.baseUrl,
      NAMESPACE,
      'jobs',
      id(jobId),
      what
    );
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, {}, this.settings);
    } catch (error) {
      throw new ApiError(`cannot reach the server: ${errorMessage(error)}`, 0);
    }
    if (!response.ok) {
      const text = await response.text();
      let data: unknown = text;
      try {
        data = JSON.parse(text);
      } catch {
        // not JSON: the status line says it
      }
      throw toError(response, data);
    }
    return response.blob();
  }

  notebookParameters(path: string): Promise<NotebookInfo> {
    return this.request(
      `notebook-parameters${URLExt.objectToQueryString({ path })}`
    );
  }

  alerts(): Promise<AlertList> {
    return this.request('alerts');
  }

  metrics(query: string, start?: number, end?: number, step?: number) {
    const params: { [key: string]: string } = { query };
    if (start !== undefined) {
      params.start = String(start);
    }
    if (end !== undefined) {
      params.end = String(end);
    }
    if (step !== undefined) {
      params.step = String(step);
    }
    return this.request<MetricsAnswer>(
      `metrics${URLExt.objectToQueryString(params)}`
    );
  }

  summary(): Promise<Summary> {
    return this.request('summary');
  }
}
