// Where droverd listens: a Unix socket path, `tcp://HOST:PORT` or `tls://HOST:PORT` (an IPv6
// host in brackets), and the one connection attempt to it (docs/API.md, "Transports").
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

export interface TlsOptions {
  /** The CA that signed droverd's certificate (PEM file); default: Node's CAs. */
  caFile?: string;
  /** This client's certificate and key (PEM files), for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  /** The name droverd's certificate is checked against; default: the address's host. */
  serverName?: string;
}

export type Address =
  | { kind: 'unix'; text: string; path: string }
  | { kind: 'tcp' | 'tls'; text: string; host: string; port: number };

/** Throws a TypeError naming a malformed tcp:// or tls:// address. */
export function parseAddress(text: string): Address {
  for (const kind of ['tcp', 'tls'] as const) {
    const scheme = `${kind}://`;
    if (!text.startsWith(scheme)) continue;
    const rest = text.slice(scheme.length);
    const colon = rest.lastIndexOf(':');
    let host = colon > 0 ? rest.slice(0, colon) : '';
    const portText = colon > 0 ? rest.slice(colon + 1) : '';
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    const port = /^\d+$/.test(portText) ? Number(portText) : 0;
    if (!host || port < 1 || port > 65535) {
      throw new TypeError(`address '${text}': expected ${scheme}HOST:PORT with a port in 1..65535`);
    }
    return { kind, text, host, port };
  }
  if (text.includes('://')) {
    throw new TypeError(`address '${text}': the schemes are tcp:// and tls://; anything else is a socket path`);
  }
  return { kind: 'unix', text, path: text };
}

/** TlsOptions with the files read (once, when the client is made: a missing file throws there). */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
}

export function loadTls(options: TlsOptions = {}): TlsMaterial {
  const read = (file?: string) => (file ? fs.readFileSync(file) : undefined);
  return { ca: read(options.caFile), cert: read(options.certFile), key: read(options.keyFile), serverName: options.serverName };
}

/** Starts one connection attempt; `ready` is the event that says it is usable. */
export function connectSocket(address: Address, material: TlsMaterial): { socket: net.Socket; ready: string } {
  if (address.kind === 'unix') return { socket: net.createConnection({ path: address.path }), ready: 'connect' };
  if (address.kind === 'tcp') {
    const socket = net.createConnection({ host: address.host, port: address.port, noDelay: true });
    return { socket, ready: 'connect' };
  }
  const socket = tls.connect({
    host: address.host,
    port: address.port,
    servername: material.serverName ?? (net.isIP(address.host) ? undefined : address.host),
    ca: material.ca,
    cert: material.cert,
    key: material.key,
  });
  socket.setNoDelay(true);
  return { socket, ready: 'secureConnect' };
}
