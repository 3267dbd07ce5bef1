// drover-client: a client for droverd's JSON-RPC API over a Unix socket, TCP or TLS (docs/API.md).
export type { TlsOptions } from './address.js';
export { DroverClient, SOCKET_ENV, SOCKET_NAME, defaultRunDir, defaultSocket } from './client.js';
export type { ConnectOptions } from './client.js';
export { GenerateStream } from './stream.js';
export { ConnectionLostError, DroverConnectionError, DroverError, ErrorCode } from './errors.js';
export type { CallOptions, Chunk, GenerateParams, GenerateResult, Health, ModelInfo, Priority } from './types.js';
