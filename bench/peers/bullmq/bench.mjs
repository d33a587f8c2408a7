// BullMQ's side of bench/peers (see bench/peers/adapters/bullmq.py).
//
//   node bench.mjs produce URL SERIAL TOTAL   add SERIAL jobs one awaited queue.add() at a time,
//                                             the rest with addBulk of 100; print the rates (JSON)
//   node bench.mjs work URL                   one Worker at concurrency 10 with a no-op processor;
//                                             after BENCH_JOBS jobs, push the processing rate and
//                                             CPU per job (first to last completion) to Redis
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";

const QUEUE = "bench";
const BULK = 100;
const RESULT_KEY = "bench:peers:result";

function connection(url) {
  return new IORedis(url, { maxRetriesPerRequest: null });
}

async function produce(url, serial, total) {
  const conn = connection(url);
  const queue = new Queue(QUEUE, { connection: conn });
  await queue.waitUntilReady();
  const t0 = performance.now();
  for (let i = 0; i < serial; i++) {
    await queue.add("noop", { i });
  }
  const t1 = performance.now();
  for (let start = serial; start < total; start += BULK) {
    const jobs = [];
    for (let i = start; i < Math.min(start + BULK, total); i++) jobs.push({ name: "noop", data: { i } });
    await queue.addBulk(jobs);
  }
  const t2 = performance.now();
  await queue.close();
  await conn.quit();
  const rate = (n, ms) => (n * 1000) / Math.max(ms, 1e-6);
  console.log(JSON.stringify({ serial: rate(serial, t1 - t0), bulk: rate(total - serial, t2 - t1) }));
}

async function work(url) {
  const jobs = Number(process.env.BENCH_JOBS);
  const conn = connection(url);
  const report = connection(url);
  let count = 0;
  let first = null;
  let worker = null;
  const processor = async () => {
    count += 1;
    if (count === 1) first = { t: performance.now(), cpu: process.cpuUsage() };
    if (count === jobs) {
      const wall = (performance.now() - first.t) / 1000;
      const used = process.cpuUsage(first.cpu);
      const n = Math.max(jobs - 1, 1);
      const doc = { rate: n / wall, cpu_us: (used.user + used.system) / n, pid: process.pid };
      await report.rpush(RESULT_KEY, JSON.stringify(doc));
    }
  };
  worker = new Worker(QUEUE, processor, { connection: conn, concurrency: 10 });
  const stop = async () => {
    await worker.close();
    await conn.quit();
    await report.quit();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const [mode, url, ...rest] = process.argv.slice(2);
if (mode === "produce") {
  await produce(url, Number(rest[0]), Number(rest[1]));
} else if (mode === "work") {
  await work(url);
} else {
  console.error("usage: node bench.mjs produce URL SERIAL TOTAL | work URL");
  process.exit(2);
}
