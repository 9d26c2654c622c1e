// The same N no-op units of work through graphile-worker and pg-boss, each on
// a fresh database of the same PostgreSQL; prints one JSON line per peer:
// {"peer", "jobs", "enqueue_seconds", "run_seconds", "jobs_per_second"}.
//
//   node peers.mjs <admin-url> <jobs> <concurrency>
//
// Run by `cargo bench --bench batchops -- peers`, which puts batchops's own
// figure for the same N beside them.

import pg from "pg";
import { makeWorkerUtils, run } from "graphile-worker";
import { PgBoss } from "pg-boss";

const [adminUrl, jobsArg, concurrencyArg] = process.argv.slice(2);
const jobs = Number(jobsArg ?? 100000);
const concurrency = Number(concurrencyArg ?? 16);

async function freshDatabase(name) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return adminUrl.replace(/\/[^/]*$/, `/${name}`);
}

async function dropDatabase(name) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

function report(peer, enqueueSeconds, runSeconds) {
  console.log(
    JSON.stringify({
      peer,
      jobs,
      enqueue_seconds: enqueueSeconds,
      run_seconds: runSeconds,
      jobs_per_second: jobs / runSeconds,
    }),
  );
}

async function graphileWorker() {
  const name = `peers_graphile_${process.pid}`;
  const connectionString = await freshDatabase(name);
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();
  const enqueueStart = performance.now();
  for (let start = 0; start < jobs; start += 10000) {
    const batch = [];
    for (let i = start; i < Math.min(jobs, start + 10000); i++) {
      batch.push({ identifier: "noop", payload: { i } });
    }
    await utils.addJobs(batch);
  }
  const enqueueSeconds = (performance.now() - enqueueStart) / 1000;
  await utils.release();
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const runStart = performance.now();
  const runner = await run({
    connectionString,
    concurrency,
    noHandleSignals: true,
    pollInterval: 100,
    logger: undefined,
    taskList: {
      noop: async () => {
        done += 1;
        if (done === jobs) finish();
      },
    },
  });
  await finished;
  const runSeconds = (performance.now() - runStart) / 1000;
  await runner.stop();
  await dropDatabase(name);
  report("graphile-worker", enqueueSeconds, runSeconds);
}

async function pgBoss() {
  const name = `peers_pgboss_${process.pid}`;
  const connectionString = await freshDatabase(name);
  const boss = new PgBoss({ connectionString, max: concurrency + 4 });
  boss.on("error", (error) => console.error(error));
  await boss.start();
  await boss.createQueue("noop");
  const enqueueStart = performance.now();
  for (let start = 0; start < jobs; start += 10000) {
    const batch = [];
    for (let i = start; i < Math.min(jobs, start + 10000); i++) {
      batch.push({ data: { i } });
    }
    await boss.insert("noop", batch);
  }
  const enqueueSeconds = (performance.now() - enqueueStart) / 1000;
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const runStart = performance.now();
  await boss.work(
    "noop",
    { batchSize: 100, localConcurrency: concurrency, pollingIntervalSeconds: 0.5 },
    async (batch) => {
      done += batch.length;
      if (done >= jobs) finish();
    },
  );
  await finished;
  const runSeconds = (performance.now() - runStart) / 1000;
  await boss.stop({ graceful: false, wait: true });
  await dropDatabase(name);
  report("pg-boss", enqueueSeconds, runSeconds);
}

await graphileWorker();
await pgBoss();
