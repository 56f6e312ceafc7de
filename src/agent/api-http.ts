// Request plumbing for the REST API: JSON replies, bounded JSON bodies, bearer-token checks.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const MAX_BODY_BYTES = 64 * 1024;

/** A request we refuse, with the status and message to send back. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  opts: { headers?: Record<string, string>; head?: boolean } = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...opts.headers,
  });
  res.end(opts.head ? undefined : text);
}

/** Reads a JSON object body (empty body = {}); rejects with HttpError 413 or 400. */
export async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) throw tooLarge();
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      // Keep the connection usable: discard the rest of the body instead of destroying the socket.
      req.off('data', onData);
      req.off('end', onEnd);
      req.resume();
      reject(tooLarge());
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks).toString('utf8'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.once('error', reject);
  });
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new HttpError(400, 'request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

function tooLarge(): HttpError {
  return new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
}

/** An optional string field of a request body; 400 when present with another type. */
export function optionalString(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new HttpError(400, `"${field}" must be a non-empty string (a member name)`);
  }
  return value;
}

// Hashing first gives equal-length inputs, so timingSafeEqual never leaks the token's length.
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Throws HttpError 403 (no token configured) or 401 (missing or wrong token). */
export function checkAuth(req: IncomingMessage, token: string | null): void {
  if (token === null) throw new HttpError(403, 'no api token configured; set restapi.token');
  const header = req.headers.authorization;
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null) {
    throw new HttpError(401, 'authentication required: send "Authorization: Bearer <restapi.token>"', {
      'WWW-Authenticate': 'Bearer realm="baton"',
    });
  }
  if (!timingSafeEqual(digest(m[1]!), digest(token))) {
    throw new HttpError(401, 'invalid API token', {
      'WWW-Authenticate': 'Bearer realm="baton", error="invalid_token"',
    });
  }
}
