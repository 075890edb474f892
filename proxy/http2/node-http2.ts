// node:http2, loaded at the first HTTP/2 connection: a static import would load it (and its share
// of Node's HTTP machinery) into every proxy at start, HTTP/2 traffic or not (test/proxy/bundle.test.ts,
// README "Memory"). The frame codes the proxy uses are written out here so no module needs it early.
import type * as Http2Module from 'node:http2';

let loaded: typeof Http2Module | undefined;

export function nodeHttp2(): typeof Http2Module {
  return (loaded ??= process.getBuiltinModule('node:http2') as typeof Http2Module);
}

/** RFC 9113 §7 error codes and §6.2 the END_STREAM flag, as Node's http2.constants names them. */
export const NGHTTP2_NO_ERROR = 0x0;
export const NGHTTP2_INTERNAL_ERROR = 0x2;
export const NGHTTP2_REFUSED_STREAM = 0x7;
export const NGHTTP2_CANCEL = 0x8;
export const NGHTTP2_FLAG_END_STREAM = 0x1;
