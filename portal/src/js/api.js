// The client API (/v1/, same origin). The bearer token from POST /v1/login
// is kept in this module's memory only: it goes out in the Authorization
// header, never in a cookie, so another site's page cannot make the browser
// send it (no CSRF), and it is gone when the tab closes or reloads.

let token = null;

/** An API error answer: `code` is the stable code of the OpenAPI document. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || `http-${status}`;
  }
}

export function setToken(value) {
  token = value;
}

export function signedIn() {
  return token !== null;
}

/** `fetch` with the token; JSON in and out. Rejects with ApiError. */
export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `the switch did not answer (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, json?.code, json?.message || text);
  }
  return json;
}

/** A binary resource (a recording) as a Blob, with the token. */
export async function blob(path) {
  const response = await fetch(path, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    credentials: 'omit',
  });
  if (!response.ok) throw new ApiError(response.status, `http-${response.status}`);
  return response.blob();
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const patch = (path, body) => call('PATCH', path, body);
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);
