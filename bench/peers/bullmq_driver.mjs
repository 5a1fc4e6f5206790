// BullMQ (Node): Worker with concurrency 64, no job records kept; 64 concurrent producers.
import { Queue, Worker } from "bullmq";

const argv = process.argv.slice(2);
const role = argv[0];
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const url = new URL(opt("url"));
const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
const queueName = opt("queue", "bench");
const n = Number(opt("n"));
const payload = { v: "x".repeat(Number(opt("payload", "16"))) };
const say = (...w) => process.stdout.write(w.join(" ") + "\n");
const now = () => Date.now() / 1000;

if (role === "worker") {
  let count = 0;
  const worker = new Worker(
    queueName,
    async () => {
      count += 1;
      if (count === n) {
        say("done", now());
        process.exit(0);
      }
    },
    { connection, concurrency: 64, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
  );
  await worker.waitUntilReady();
  say("ready");
} else {
  const queue = new Queue(queueName, { connection });
  await queue.waitUntilReady();
  say("start", now());
  const per = Math.floor(n / 64);
  const tasks = [];
  for (let t = 0; t < 64; t++) {
    const k = t === 0 ? n - per * 63 : per;
    tasks.push((async () => {
      for (let i = 0; i < k; i++) {
        await queue.add("noop", payload, { removeOnComplete: true, removeOnFail: true });
      }
    })());
  }
  await Promise.all(tasks);
  say("end", now());
  await queue.close();
  process.exit(0);
}
