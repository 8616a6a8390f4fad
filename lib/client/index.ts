// PLACEHOLDER (being written): the browser / Node client helper over socket.io-client.
export {};
