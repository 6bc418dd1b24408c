/**
 * The physical limit: Kafka's own ProducerPerformance and ConsumerPerformance (from the same
 * jars the local broker runs from) on the same broker, the same topic layout (4 partitions,
 * replication 1) and the engagement events' record size.
 *
 *   tsx bench/kafka-tools.ts [--quick]
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { kafkaJarsLocation } from '../src/stack/kafka.js';
import { benchEnv, dropRun, benchStack, configOf, createPlainTopic, figure, REPO_ROOT, round, standalone, type BenchOptions, type BenchResult } from './lib.js';

/** Bytes of an engagement event as bench/data.ts makes them (measured: ~230). */
export const ENGAGEMENT_RECORD_BYTES = 230;

function java(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('java', args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`java ${args.slice(-12).join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

export async function runKafkaTools(opts: BenchOptions & { recordBytes?: number }): Promise<BenchResult> {
  const records = opts.quick ? 200_000 : 1_000_000;
  const recordBytes = opts.recordBytes ?? ENGAGEMENT_RECORD_BYTES;
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack);
  const config = configOf(env);
  try {
    const topic = `${config.topicPrefix}perf`;
    const partitions = config.topicPartitions;
    await createPlainTopic(config, topic, partitions);
    const cacheRoot = process.env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich');
    const libs = kafkaJarsLocation(join(REPO_ROOT, 'deploy', 'kafka', 'pom.xml'), cacheRoot).libsDir;
    const cp = `${libs}/*`;
    const bootstrap = config.kafkaBrokers.join(',');
    const jvm = ['-Xmx512m', '-cp', cp];

    const producerArgs = [
      'org.apache.kafka.tools.ProducerPerformance',
      '--topic', topic,
      '--num-records', String(records),
      '--record-size', String(recordBytes),
      '--throughput', '-1',
      '--producer-props', `bootstrap.servers=${bootstrap}`, 'acks=all', 'linger.ms=5', 'batch.size=262144',
    ];
    opts.log(`kafka-tools: ProducerPerformance ${records.toLocaleString('en')} x ${recordBytes} B`);
    const pout = await java([...jvm, ...producerArgs], 300_000);
    // "1000000 records sent, 212765.957447 records/sec (46.67 MB/sec), 150.12 ms avg latency, ..."
    const pm = /(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency/.exec(pout.trim().split('\n').pop() ?? '');
    if (!pm) throw new Error(`cannot parse ProducerPerformance output:\n${pout.slice(-1000)}`);

    const consumerArgs = ['org.apache.kafka.tools.ConsumerPerformance', '--bootstrap-server', bootstrap, '--topic', topic, '--messages', String(records), '--timeout', '60000'];
    opts.log('kafka-tools: ConsumerPerformance');
    const cout = await java([...jvm, ...consumerArgs], 300_000);
    // header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    const line = cout.trim().split('\n').filter((l) => /^\d{4}-/.test(l)).pop();
    const cols = line?.split(',').map((c) => c.trim());
    if (!cols || cols.length < 10) throw new Error(`cannot parse ConsumerPerformance output:\n${cout.slice(-1000)}`);
    const consumed = Number(cols[4]);
    const fetchMsgPerSec = Number(cols[9]);
    const settings = { records, recordBytes, partitions, replication: 1 };
    return {
      bench: 'kafka-tools',
      figures: [
        figure({ name: 'Kafka ProducerPerformance', value: round(Number(pm[2])), unit: 'records/s', command: `java -cp '<kafka ${'4.1.1'} libs>/*' ${producerArgs.join(' ')}`, settings }),
        figure({ name: 'Kafka ConsumerPerformance (fetch rate)', value: round(fetchMsgPerSec), unit: 'records/s', command: `java -cp '<libs>/*' ${consumerArgs.join(' ')}`, settings, note: 'fetch.nMsg.sec: excludes the group join (rebalance.time.ms)' }),
      ],
      details: { producer: pout.trim().split('\n').pop(), consumer: line, consumed, producerAvgLatencyMs: Number(pm[4]) },
    };
  } finally {
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runKafkaTools);
