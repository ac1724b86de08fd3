// Starts kinesalite (in memory) on 127.0.0.1 and a free port, prints "listening PORT".
// Streams become ACTIVE at once, so that tests do not wait.
const path = require('path');
const kinesalite = require(path.join(process.env.KINESALITE_MODULES || __dirname, 'node_modules', 'kinesalite'));
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 50 });
server.listen(0, '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
