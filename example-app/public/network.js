// A simulated network cable per device: a Socket.IO WebSocket transport whose traffic can be cut without closing anything.
/* global WebSocket */

// Why this exists. "Lose the network" must look to the server like a phone that went into a lift:
// the connection is not closed (no FIN, no WebSocket close frame), nothing more arrives, and
// only the server's heartbeat timeout can tell. Closing the socket would be "close the app"
// instead, which the server sees at once. So, while the cable is cut, this transport:
//   - drops everything the device sends (its heartbeats, its events, engine.io's pongs);
//   - drops everything the server sends (pings, kicks, status changes);
//   - hides a close the server makes meanwhile (a dead link would not carry it either) and hands
//     it over when the cable is back;
//   - never sends a close frame itself: if the device gives up on the silent link, the real
//     socket is closed only once the cable is back;
//   - fails new connection attempts, so socket.io-client's reconnection keeps retrying.
// Everything above the WebSocket (engine.io, Socket.IO, express-presence/client) runs unchanged.

import { WebSocket as WebSocketTransport } from 'socket.io-client';

/** One device's cable. Pass `link.transport` in socket.io-client's `transports` option. */
export class NetworkLink {
  constructor() {
    this.down = false;
    /** The sockets made through this cable, so a restore can reach them. */
    this.sockets = new Set();
    /** The transport class to pass in socket.io-client's `transports` option. */
    this.transport = cuttableTransport(this);
  }

  /** Cuts the cable: from now on nothing goes through, in either direction. */
  cut() {
    this.down = true;
  }

  /** Plugs it back: a close that happened meanwhile is told now, and traffic flows again. */
  restore() {
    this.down = false;
    for (const socket of [...this.sockets]) socket.reconnected();
  }
}

/**
 * socket.io-client accepts transport classes in `transports`; this one is its own WebSocket
 * transport with the WebSocket object swapped through `createSocket`, the hook the transport
 * keeps for exactly that (its Node.js variant overrides it the same way).
 */
function cuttableTransport(link) {
  return class CuttableWebSocket extends WebSocketTransport {
    createSocket(uri, protocols) {
      if (link.down) throw new Error('the simulated network is down');
      return new CuttableSocket(link, uri, protocols);
    }
  };
}

/** The part of the WebSocket interface engine.io's transport uses, over a real WebSocket. */
class CuttableSocket {
  constructor(link, uri, protocols) {
    this.link = link;
    this.ws = protocols ? new WebSocket(uri, protocols) : new WebSocket(uri);
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this.onclose = null;
    /** The close the server made while the cable was cut, told when it is back. */
    this.heldClose = null;
    /** The device gave up on this socket while the cable was cut. */
    this.abandoned = false;
    link.sockets.add(this);

    this.ws.onopen = (event) => {
      if (!link.down) this.onopen?.(event);
    };
    this.ws.onmessage = (event) => {
      if (!link.down) this.onmessage?.(event);
    };
    this.ws.onerror = (event) => {
      if (!link.down) this.onerror?.(event);
    };
    this.ws.onclose = (event) => {
      if (this.abandoned) return link.sockets.delete(this);
      if (link.down) {
        this.heldClose = event;
        return;
      }
      link.sockets.delete(this);
      this.onclose?.(event);
    };
  }

  get binaryType() {
    return this.ws.binaryType;
  }

  set binaryType(type) {
    this.ws.binaryType = type;
  }

  get readyState() {
    return this.ws.readyState;
  }

  send(data) {
    if (!this.link.down) this.ws.send(data);
  }

  close(code, reason) {
    if (this.link.down) {
      // A close frame could not cross a dead link either; the socket is closed for real later.
      this.abandoned = true;
      return;
    }
    this.ws.close(code, reason);
  }

  /** The cable is back. */
  reconnected() {
    if (this.abandoned) {
      this.ws.close();
      this.link.sockets.delete(this);
      return;
    }
    if (this.heldClose) {
      const event = this.heldClose;
      this.heldClose = null;
      this.link.sockets.delete(this);
      this.onclose?.(event);
    }
  }
}
