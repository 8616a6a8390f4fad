// The room routes: GET /rooms/:room paged, POST /rooms/query, the source group route, their refusals, and a store without rooms.

import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import type { PresenceStore } from '../lib/index.js';
import { auth, startHarness, type Harness } from './fixtures/socket-harness.js';
import { coreStore } from './helpers/core-store.js';

const ADMIN = 'Bearer admin';

describe('http: rooms', () => {
  let harness: Harness | undefined;
  let app: express.Express;

  async function start(store?: PresenceStore): Promise<Harness> {
    harness = await startHarness({
      loginPolicy: 'multi',
      roomBatchInterval: 10,
      authorize: (req) => req.headers.authorization === ADMIN,
      ...(store ? { store } : {}),
    });
    app = express();
    app.use('/api', harness.presence.router());
    return harness;
  }

  /** Users u1..un, each joined to `room` from the server. */
  async function fill(h: Harness, room: string, n: number): Promise<void> {
    const devices = await Promise.all(Array.from({ length: n }, (_, i) => h.connect(auth(`u${i + 1}`, 'Web'))));
    const sockets = [...h.io.of('/').sockets.values()];
    for (const device of devices)
      await h.presence.join(
        sockets.find((socket) => socket.id === device.socket.id)!,
        room,
        { i: device.session.userId },
      );
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('GET /rooms/:room pages the members (each exactly once), percent-decodes the name, and answers an empty room', async () => {
    const h = await start();
    await fill(h, 'team/a b', 5);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: request.Response = await request(app)
        .get(`/api/rooms/${encodeURIComponent('team/a b')}`)
        .query(cursor ? { limit: 2, cursor } : { limit: 2 })
        .set('Authorization', ADMIN)
        .expect(200);
      expect(res.body).to.include({ room: 'team/a b', count: 5 });
      expect(res.body.members.length).to.be.at.most(2);
      seen.push(...res.body.members.map((m: { userId: string }) => m.userId));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).to.equal(3);
    expect(seen).to.deep.equal(['u1', 'u2', 'u3', 'u4', 'u5']);
    const all = await request(app).get('/api/rooms/team%2Fa%20b').set('Authorization', ADMIN).expect(200);
    expect(all.body.members).to.have.length(5);
    expect(all.body.nextCursor).to.equal(null);
    expect(all.body.members[0]).to.deep.equal({
      userId: 'u1',
      status: 'Online',
      availability: 'available',
      customStatus: null,
      meta: { i: 'u1' },
      devices: [all.body.members[0].devices[0]],
    });
    const empty = await request(app).get('/api/rooms/nobody-here').set('Authorization', ADMIN).expect(200);
    expect(empty.body).to.deep.equal({ room: 'nobody-here', count: 0, members: [], nextCursor: null });
    // `/rooms/query` read with GET is the room named "query".
    expect((await request(app).get('/api/rooms/query').set('Authorization', ADMIN).expect(200)).body.room).to.equal('query');
  });

  it('GET /rooms/:room refuses a bad limit, cursor, parameter or name with 400 problem+json, and is behind authorize', async () => {
    await start();
    for (const query of ['limit=0', 'limit=1001', 'limit=two', 'limit=1.5', 'cursor=abc', 'limt=5']) {
      const res = await request(app).get(`/api/rooms/r?${query}`).set('Authorization', ADMIN).expect(400);
      expect(res.headers['content-type']).to.match(/application\/problem\+json/);
      expect(res.body.detail, query).to.be.a('string').and.not.equal('');
    }
    const long = await request(app)
      .get(`/api/rooms/${'x'.repeat(129)}`)
      .set('Authorization', ADMIN)
      .expect(400);
    expect(long.body.detail).to.match(/1 to 128/);
    expect((await request(app).get('/api/rooms/r?limit=1000').set('Authorization', ADMIN)).status).to.equal(200);
    await request(app).get('/api/rooms/r').expect(401);
    await request(app).get('/api/rooms/r').set('Authorization', 'Bearer nope').expect(403);
  });

  it('POST /rooms/query answers the counts of up to 500 rooms, distinct, in order', async () => {
    const h = await start();
    await fill(h, 'big', 3);
    const res = await request(app)
      .post('/api/rooms/query')
      .set('Authorization', ADMIN)
      .send({ rooms: ['big', 'none', 'big'] })
      .expect(200);
    expect(res.body).to.deep.equal({
      rooms: [
        { room: 'big', count: 3 },
        { room: 'none', count: 0 },
      ],
    });
    for (const body of [
      {},
      { rooms: 'big' },
      { rooms: [''] },
      { rooms: [5] },
      { rooms: Array.from({ length: 501 }, (_, i) => `r${i}`) },
      { rooms: [], romos: 1 },
    ]) {
      const bad = await request(app).post('/api/rooms/query').set('Authorization', ADMIN).send(body).expect(400);
      expect(bad.body.detail, JSON.stringify(body).slice(0, 40)).to.be.a('string');
    }
    expect(
      (
        await request(app)
          .post('/api/rooms/query')
          .set('Authorization', ADMIN)
          .send({ rooms: Array.from({ length: 500 }, (_, i) => `r${i}`) })
      ).status,
    ).to.equal(200);
  });

  it('POST /v4/group_open_http_svc/get_online_member_num answers OnlineMemberNum, or the source error format', async () => {
    const h = await start();
    await fill(h, 'g1', 2);
    const res = await request(app).post('/api/v4/group_open_http_svc/get_online_member_num').set('Authorization', ADMIN).send({ GroupId: 'g1' }).expect(200);
    expect(res.body).to.deep.equal({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '', OnlineMemberNum: 2 });
    const missing = await request(app)
      .post('/api/v4/group_open_http_svc/get_online_member_num')
      .set('Authorization', ADMIN)
      .send({ groupId: 'g1' })
      .expect(400);
    expect(missing.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
    expect(missing.body.ErrorInfo).to.match(/case-sensitive/);
    const bad = await request(app).post('/api/v4/group_open_http_svc/get_online_member_num').set('Authorization', ADMIN).send({ GroupId: 7 }).expect(400);
    expect(bad.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
    const denied = await request(app).post('/api/v4/group_open_http_svc/get_online_member_num').send({ GroupId: 'g1' }).expect(401);
    expect(denied.body).to.include({ ErrorCode: 90009 });
  });

  it('on a store without rooms every room route refuses 501, saying rooms are not yet supported', async () => {
    // Everything a store needs, and no `rooms` capability (a store of its own that shares no rooms).
    await start(coreStore());
    const page = await request(app).get('/api/rooms/r').set('Authorization', ADMIN).expect(501);
    expect(page.body.detail).to.match(/not yet supported/);
    const counts = await request(app)
      .post('/api/rooms/query')
      .set('Authorization', ADMIN)
      .send({ rooms: ['r'] })
      .expect(501);
    expect(counts.body.detail).to.match(/not yet supported/);
    const group = await request(app).post('/api/v4/group_open_http_svc/get_online_member_num').set('Authorization', ADMIN).send({ GroupId: 'r' }).expect(501);
    expect(group.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90994 });
    expect(group.body.ErrorInfo).to.match(/not yet supported/);
  });
});
