// A CSMS on ocpp-rpc (mikuso/ocpp-rpc, an OCPP-J implementation no one here wrote) in strict
// mode: every request the station sends and every answer it gives is validated against
// ocpp-rpc's own copy of the OCPP 2.1 JSON schemas, and a bad one is a CALLERROR.
// Usage: node csms.js STATION PASSWORD. Prints "listening PORT", then one JSON line per
// request received ({"action", "payload"}) and per answer to its own GetVariables request.
//
// ocpp-rpc 2.2.1 ships the OCPP 2.1 schemas with ids "urn:BootNotificationRequest" but looks
// them up as "urn:BootNotification.req" (its 2.0.1 naming), so strict mode for 'ocpp2.1'
// finds none. The validator below is ocpp-rpc's own (createValidator), over ocpp-rpc's own
// copy of the 2.1 schemas, with only their ids renamed to what it looks up.
'use strict';
const path = require('path');
const { RPCServer, createValidator } = require('ocpp-rpc');

const schemas = require(path.join(
  path.dirname(require.resolve('ocpp-rpc')), 'lib', 'schemas', 'ocpp2_1.json'));
const renamed = schemas.map((schema) => ({
  ...schema,
  $id: schema.$id.replace(/Request$/, '.req').replace(/Response$/, '.conf'),
}));
const validator = createValidator('ocpp2.1', renamed);

const [station, password] = process.argv.slice(2);
const server = new RPCServer({
  protocols: ['ocpp2.1'],
  strictMode: true,
  strictModeValidators: [validator],
});
const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');

server.auth((accept, reject, handshake) => {
  const given = handshake.password ? handshake.password.toString() : null;
  if (handshake.identity !== station || given !== password) {
    reject(401, 'wrong station or password');
    return;
  }
  accept();
});

server.on('client', (client) => {
  const now = () => new Date().toISOString();
  const record = (action) => ({ params }) => {
    out({ action, payload: params });
    return answers[action](params);
  };
  const answers = {
    BootNotification: () => ({ currentTime: now(), interval: 300, status: 'Accepted' }),
    Heartbeat: () => ({ currentTime: now() }),
    StatusNotification: () => ({}),
    TransactionEvent: () => ({}),
    NotifySettlement: () => ({}),
    SecurityEventNotification: () => ({}),
  };
  for (const action of Object.keys(answers)) {
    client.handle(action, record(action));
  }
  client.handle(({ method }) => {
    out({ action: method, unhandled: true });
    throw new Error('not implemented here');
  });
  client.once('call', () => {
    // Once the station has spoken, ask it for a variable: its answer is validated too.
    setTimeout(async () => {
      try {
        const answer = await client.call('GetVariables', {
          getVariableData: [
            { component: { name: 'TariffCostCtrlr' }, variable: { name: 'Currency' } },
          ],
        });
        out({ action: 'GetVariables.answer', payload: answer });
      } catch (err) {
        out({ action: 'GetVariables.error', payload: { message: String(err) } });
      }
    }, 100);
  });
});

server.listen(0, '127.0.0.1').then((http) => {
  out({ listening: http.address().port });
});
