// CouchDB-protocol test server for activationstore's Go tests: PouchDB in
// memory behind express-pouchdb. Started by the Go harness in
// internal/couchtest; not for production use.
//
// Usage: node server.js [--port N] [--host 127.0.0.1] [--validate-doc-update]
//
// Prints one line "couchtest listening on http://HOST:PORT" on stdout once it
// accepts connections. Exits when its stdin closes, so that it never outlives
// the test binary that started it, even one that crashed.
'use strict';

// CouchDB runs map functions in sloppy mode; pouchdb-mapreduce prefixes them
// with "use strict" and runs each call in a new VM context. OpenWhisk's
// whisks-filters views assign an undeclared loop variable (for (i = 0; …)),
// which throws in strict mode and, caught by the view's own try/catch,
// silently emits nothing. Run them as CouchDB does — sloppy, in one
// long-lived context (also far faster than a context per document).
const vm = require('vm');
const viewContext = vm.createContext({});
vm.runInNewContext = function (code) {
  return vm.runInContext(code.replace('(function() {"use strict";', '(function() {'), viewContext);
};

const express = require('express');
const expressPouchDB = require('express-pouchdb');
const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-replication'));

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '0'));

const MemPouchDB = PouchDB.defaults({ adapter: 'memory' });

// Document paths: /db/docid, /db/_design/name, /db/_local/name (raw, so an
// encoded "%2F" inside a document id keeps the id one segment).
function isDocPath(path) {
  const segs = path.split('/');
  if (segs.length === 3) {
    return segs[1] !== '' && segs[1][0] !== '_' && segs[2] !== '' && segs[2][0] !== '_';
  }
  if (segs.length === 4) {
    return segs[1] !== '' && segs[1][0] !== '_' && (segs[2] === '_design' || segs[2] === '_local') && segs[3] !== '';
  }
  return false;
}

// CouchDB answers GET/HEAD/DELETE on a document with ETag: "<rev>"; clients
// (kivik's GetRev, Delete) read the revision from it. express-pouchdb sends
// none, and Express's default weak ETag (a body hash) would mislead them.
function revisionETag(req, res, next) {
  const m = req.method;
  if ((m !== 'GET' && m !== 'HEAD' && m !== 'DELETE') || !isDocPath(req.path)) {
    return next();
  }
  const send = res.send;
  res.send = function (body) {
    if (res.statusCode >= 200 && res.statusCode < 300 && (Buffer.isBuffer(body) || typeof body === 'string')) {
      try {
        const v = JSON.parse(body.toString());
        const rev = m === 'DELETE' ? v.rev : v._rev;
        if (typeof rev === 'string') {
          res.set('ETag', '"' + rev + '"');
        }
      } catch (e) {
        // not JSON (an attachment): no revision to report
      }
    }
    return send.call(this, body);
  };
  next();
}

// pouchdb-validation answers _bulk_docs with the refused documents first;
// CouchDB answers in the order of the request, and clients match results
// to documents by position. Put the results back in the request's order.
function bulkDocsInRequestOrder(req, res, next) {
  if (req.method !== 'POST' || !/^\/[^/]+\/_bulk_docs$/.test(req.path)) {
    return next();
  }
  const send = res.send;
  res.send = function (body) {
    try {
      const docs = req.body && req.body.docs;
      const results = JSON.parse(body.toString());
      if (Array.isArray(docs) && Array.isArray(results) && docs.length === results.length) {
        const pool = results.slice();
        const ordered = docs.map((doc) => {
          const i = pool.findIndex((r) => r && doc && r.id === doc._id);
          return i < 0 ? null : pool.splice(i, 1)[0];
        });
        if (!ordered.includes(null)) {
          body = Buffer.from(JSON.stringify(ordered));
        }
      }
    } catch (e) {
      // not the JSON array of a bulk reply: send as is
    }
    return send.call(this, body);
  };
  next();
}

// --validate-doc-update runs design documents' validate_doc_update
// functions, as CouchDB does. Off by default: it reads the design
// documents on every write, which slows _bulk_docs by half.
const validation = process.argv.includes('--validate-doc-update');
const pouchOptions = { mode: 'minimumForPouchDB' };
if (validation) {
  pouchOptions.overrideMode = { include: ['validation'] };
}
const pouchApp = expressPouchDB(MemPouchDB, pouchOptions);
pouchApp.set('etag', false);
pouchApp.set('x-powered-by', false);

const app = express();
app.set('etag', false);
app.set('x-powered-by', false);
app.use(revisionETag);
if (validation) {
  app.use(bulkDocsInRequestOrder);
}
app.use(pouchApp);

const server = app.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write('couchtest listening on http://' + addr.address + ':' + addr.port + '\n');
});
server.on('error', (err) => {
  process.stderr.write('couchtest: ' + err.stack + '\n');
  process.exit(1);
});

function exit() {
  server.close();
  process.exit(0);
}
process.stdin.on('end', exit);
process.stdin.on('close', exit);
process.stdin.on('error', exit);
process.stdin.resume();
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
