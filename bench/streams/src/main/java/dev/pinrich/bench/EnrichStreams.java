package dev.pinrich.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.text.Normalizer;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.RocksDBConfigSetter;
import org.apache.kafka.streams.state.Stores;
import org.rocksdb.BlockBasedTableConfig;
import org.rocksdb.LRUCache;
import org.rocksdb.Options;
import org.rocksdb.WriteBufferManager;

/**
 * The Kafka Streams peer of pinrich's enrich worker, for the benchmarks (bench/streams.ts): the
 * same work on the same topics, written the way a Kafka Streams team would write it.
 *
 * <ul>
 *   <li>pin events (created / updated / deleted) keep the pin's cleaned text fields;
 *   <li>engagement events are deduplicated by {@code event_id} (a persistent store of the ids
 *       seen), then counted per (pin, case-folded board title) and per (pin, case-folded query),
 *       plus the pin's engagement count;
 *   <li>a changed pin is marked dirty; a wall-clock punctuation every {@code commit.interval.ms}
 *       (the same length as enrich's PINRICH_ENRICH_WINDOW_MS) builds each dirty pin's
 *       document — top K board titles and queries by count, ties by text, the assembled pin
 *       text, a sha256 content hash — and forwards it to the compacted output topic only when
 *       the hash changed (version + 1); a deleted pin becomes a tombstone.
 * </ul>
 *
 * <p>Every store has the record cache and a changelog topic (the Kafka Streams defaults), so
 * state is as durable as enrich's Redis state and the cache coalesces the writes of one commit
 * interval, as enrich's window does. The state proper (dedup ids, counts, pins, emitted
 * versions) is in RocksDB; the small dirty set is an in-memory store (see its declaration). Both input topics are keyed by
 * pin id with the same partition count, so one task owns a pin on both (co-partitioning).
 *
 * <p>What it leaves out compared with enrich: captions (the benchmark has none), language
 * detection (the benchmark's events carry a language), dead-letter records (malformed input is
 * counted, not published) and expiry of the dedup ids (enrich's horizon is 7 days; the
 * benchmark runs for minutes, so nothing would expire in either).
 *
 * <p>Arguments are {@code key=value}: bootstrap, app.id, pins.topic, engagement.topic,
 * output.topic, guarantee (exactly_once_v2 | at_least_once), threads, commit.ms, cache.bytes,
 * state.dir, top.k, expected (input records; "flushed" is reported once they are all processed
 * and flushed). Progress goes to stdout as JSON lines every 200 ms; the app closes cleanly when
 * stdin reaches its end.
 */
public final class EnrichStreams {
  static final ObjectMapper JSON = new ObjectMapper();
  static final String SEP = "\u0001";
  static final Set<String> SEARCH_TYPES = Set.of("search_click", "closeup", "long_click");

  static final AtomicLong PROCESSED = new AtomicLong();
  static final AtomicLong DUPLICATES = new AtomicLong();
  static final AtomicLong MALFORMED = new AtomicLong();
  static final AtomicLong DOCUMENTS = new AtomicLong();
  static final AtomicLong TOMBSTONES = new AtomicLong();
  static final AtomicLong UNCHANGED = new AtomicLong();
  static final AtomicLong FIRST_AT = new AtomicLong();
  static final Map<String, EnrichProcessor> TASKS = new ConcurrentHashMap<>();

  private EnrichStreams() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> a = new HashMap<>();
    for (String arg : args) {
      int eq = arg.indexOf('=');
      if (eq < 1) throw new IllegalArgumentException("expected key=value, got " + arg);
      a.put(arg.substring(0, eq), arg.substring(eq + 1));
    }
    String pinsTopic = need(a, "pins.topic");
    String engagementTopic = need(a, "engagement.topic");
    String outputTopic = need(a, "output.topic");
    long commitMs = Long.parseLong(a.getOrDefault("commit.ms", "1000"));
    int topK = Integer.parseInt(a.getOrDefault("top.k", "10"));
    long expected = Long.parseLong(a.getOrDefault("expected", "0"));

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(a, "app.id"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.getOrDefault("guarantee", StreamsConfig.EXACTLY_ONCE_V2));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(a.getOrDefault("threads", "1")));
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(a.getOrDefault("cache.bytes", String.valueOf(64L << 20))));
    p.put(StreamsConfig.STATE_DIR_CONFIG, need(a, "state.dir"));
    // A single-broker cluster: changelog topics with one replica.
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    // exactly_once_v2: Kafka Streams' 10 s transaction timeout is two commit intervals of 5 s;
    // on two starved cores a transaction outlived it, the producer was fenced and the tasks
    // replayed from their last commit (processed > input). Six intervals, at least 60 s.
    p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), (int) Math.max(60_000, 6 * commitMs));
    // No JMX reporter: every store iterator registers (and JMX re-registers) an open-iterator
    // gauge, which showed in the stream threads' stacks; the peer reports on stdout instead.
    p.put(StreamsConfig.METRIC_REPORTER_CLASSES_CONFIG, "");
    p.put(StreamsConfig.ROCKSDB_CONFIG_SETTER_CLASS_CONFIG, BoundedRocksDbMemory.class);

    Topology topology = new Topology();
    topology.addSource("pins", new StringDeserializer(), new ByteArrayDeserializer(), pinsTopic);
    topology.addSource("engagement", new StringDeserializer(), new ByteArrayDeserializer(), engagementTopic);
    topology.addProcessor("enrich", () -> new EnrichProcessor(pinsTopic, commitMs, topK), "pins", "engagement");
    topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("seen"), Serdes.String(), Serdes.Long()).withCachingEnabled(), "enrich");
    topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("counts"), Serdes.String(), Serdes.Long()).withCachingEnabled(), "enrich");
    topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("pins"), Serdes.String(), Serdes.ByteArray()).withCachingEnabled(), "enrich");
    // The dirty set is a queue (put, iterate, delete): in RocksDB every flush's seek would wade
    // through the tombstones of all earlier deletes. Kafka Streams' in-memory store (a sorted map,
    // restored from its changelog on fail-over) is the store made for it.
    topology.addStateStore(Stores.keyValueStoreBuilder(Stores.inMemoryKeyValueStore("dirty"), Serdes.String(), Serdes.Long()).withCachingEnabled(), "enrich");
    topology.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("emitted"), Serdes.String(), Serdes.String()).withCachingEnabled(), "enrich");
    topology.addSink("out", outputTopic, new StringSerializer(), new ByteArraySerializer(), "enrich");

    KafkaStreams streams = new KafkaStreams(topology, p);
    CountDownLatch closed = new CountDownLatch(1);
    streams.setStateListener((now, before) -> report("{\"t\":\"state\",\"at\":" + System.currentTimeMillis() + ",\"state\":\"" + now + "\"}"));
    streams.setUncaughtExceptionHandler(err -> {
      report("{\"t\":\"error\",\"at\":" + System.currentTimeMillis() + ",\"error\":" + JSON.valueToTree(String.valueOf(err)) + "}");
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();

    Thread reporter = new Thread(() -> {
      while (closed.getCount() > 0) {
        report(progress(expected, streams.state().toString()));
        try {
          Thread.sleep(200);
        } catch (InterruptedException e) {
          return;
        }
      }
    }, "progress");
    reporter.setDaemon(true);
    reporter.start();

    // The parent ends stdin to stop us: close cleanly (commit, leave the group), report, exit.
    try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      while (in.readLine() != null) {
        // Nothing to read but the end of the stream.
      }
    }
    streams.close(Duration.ofSeconds(60));
    closed.countDown();
    report(progress(expected, "CLOSED"));
    System.out.flush();
    System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
  }

  static String need(Map<String, String> a, String key) {
    String v = a.get(key);
    if (v == null || v.isEmpty()) throw new IllegalArgumentException("missing argument " + key + "=...");
    return v;
  }

  static synchronized void report(String line) {
    System.out.println(line);
    System.out.flush();
  }

  static String progress(long expected, String state) {
    long processed = PROCESSED.get();
    boolean flushed = processed >= expected && !TASKS.isEmpty();
    for (EnrichProcessor t : TASKS.values()) flushed &= t.flushedRecords == t.records;
    return "{\"t\":\"progress\",\"at\":" + System.currentTimeMillis() + ",\"state\":\"" + state + "\",\"firstAt\":" + FIRST_AT.get()
        + ",\"processed\":" + processed + ",\"duplicates\":" + DUPLICATES.get() + ",\"malformed\":" + MALFORMED.get()
        + ",\"documents\":" + DOCUMENTS.get() + ",\"tombstones\":" + TOMBSTONES.get() + ",\"unchanged\":" + UNCHANGED.get()
        + ",\"tasks\":" + TASKS.size() + ",\"flushed\":" + flushed + "}";
  }

  // ---- text: the same rules as src/core/text.ts (cleanText / foldText) ----

  static final Pattern WHITESPACE = Pattern.compile("[\\s\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+");
  static final Pattern CONTROL_OR_FORMAT = Pattern.compile("[\\p{Cc}\\p{Cf}\\p{Co}\\p{Cn}&&[^\\u200c\\u200d]]");
  static final Pattern SPACES = Pattern.compile(" {2,}");

  /** True for printable ASCII with single inner spaces: nothing to normalise (the common case). */
  static boolean plain(String s) {
    int n = s.length();
    if (n == 0 || s.charAt(0) == ' ' || s.charAt(n - 1) == ' ') return n == 0;
    for (int i = 0; i < n; i++) {
      char c = s.charAt(i);
      if (c < 0x20 || c > 0x7e || (c == ' ' && s.charAt(i - 1) == ' ')) return false;
    }
    return true;
  }

  static String clean(String s) {
    if (s == null) return "";
    if (plain(s)) return s;
    String t = Normalizer.normalize(s, Normalizer.Form.NFKC);
    t = WHITESPACE.matcher(t).replaceAll(" ");
    t = CONTROL_OR_FORMAT.matcher(t).replaceAll("");
    return SPACES.matcher(t).replaceAll(" ").trim();
  }

  static String fold(String s) {
    String c = clean(s);
    if (plain(c)) return c.toLowerCase(Locale.ROOT);
    return Normalizer.normalize(c.toLowerCase(Locale.ROOT).replace("ß", "ss").replace("ς", "σ"), Normalizer.Form.NFKC);
  }

  static String text(JsonNode v, String field) {
    JsonNode n = v.get(field);
    return n == null || !n.isTextual() ? null : n.asText();
  }

  record Counted(String text, long count) {}

  /**
   * RocksDB memory bounded for the whole process, the recipe of the Kafka Streams memory
   * management docs: without it every store instance (4 tasks x 4 stores here) gets its own
   * 50 MiB block cache and three 16 MiB memtables, and the JVM's RSS says more about those
   * defaults than about the work. One LRU cache of `pinrich.rocksdb.bytes` (default 64 MiB;
   * 0 = the defaults) holds the blocks, the index and filter blocks and, through the write
   * buffer manager, half of it the memtables.
   */
  public static final class BoundedRocksDbMemory implements RocksDBConfigSetter {
    static final long TOTAL = Long.getLong("pinrich.rocksdb.bytes", 64L << 20);
    private static final LRUCache CACHE = TOTAL > 0 ? new LRUCache(TOTAL, -1, false, 0.1) : null;
    private static final WriteBufferManager WRITE_BUFFERS = TOTAL > 0 ? new WriteBufferManager(TOTAL / 2, CACHE) : null;

    @Override
    public void setConfig(String storeName, Options options, Map<String, Object> configs) {
      if (CACHE == null) return; // pinrich.rocksdb.bytes=0: Kafka Streams' per-store defaults
      BlockBasedTableConfig table = (BlockBasedTableConfig) options.tableFormatConfig();
      table.setBlockCache(CACHE);
      table.setCacheIndexAndFilterBlocks(true);
      table.setCacheIndexAndFilterBlocksWithHighPriority(true);
      table.setPinTopLevelIndexAndFilter(true);
      options.setWriteBufferManager(WRITE_BUFFERS);
      options.setTableFormatConfig(table);
    }

    @Override
    public void close(String storeName, Options options) {
      // The cache and the write buffer manager are shared by every store: never closed here.
    }
  }

  static final class EnrichProcessor implements Processor<String, byte[], String, byte[]> {
    private final String pinsTopic;
    private final long flushEveryMs;
    private final int topK;
    private final MessageDigest sha256;
    private ProcessorContext<String, byte[]> ctx;
    private KeyValueStore<String, Long> seen;
    private KeyValueStore<String, Long> counts;
    private KeyValueStore<String, byte[]> pins;
    private KeyValueStore<String, Long> dirty;
    private KeyValueStore<String, String> emitted;
    private String taskId;
    /** Records this task processed, and how many of them its last completed flush covered. */
    volatile long records;
    volatile long flushedRecords;

    EnrichProcessor(String pinsTopic, long flushEveryMs, int topK) {
      this.pinsTopic = pinsTopic;
      this.flushEveryMs = flushEveryMs;
      this.topK = topK;
      try {
        this.sha256 = MessageDigest.getInstance("SHA-256");
      } catch (NoSuchAlgorithmException e) {
        throw new IllegalStateException(e);
      }
    }

    @Override
    public void init(ProcessorContext<String, byte[]> context) {
      ctx = context;
      seen = context.getStateStore("seen");
      counts = context.getStateStore("counts");
      pins = context.getStateStore("pins");
      dirty = context.getStateStore("dirty");
      emitted = context.getStateStore("emitted");
      taskId = context.taskId().toString();
      // Wall-clock, not stream time: a pin's change is published within one interval of its
      // arrival however old the events' timestamps are (enrich's window works the same way).
      context.schedule(Duration.ofMillis(flushEveryMs), PunctuationType.WALL_CLOCK_TIME, now -> flush());
      TASKS.put(taskId, this);
    }

    @Override
    public void close() {
      TASKS.remove(taskId, this);
    }

    @Override
    public void process(Record<String, byte[]> r) {
      FIRST_AT.compareAndSet(0, System.currentTimeMillis());
      String topic = ctx.recordMetadata().map(RecordMetadata::topic).orElse("");
      try {
        JsonNode v = r.value() == null ? null : JSON.readTree(r.value());
        boolean ok = v != null && v.isObject() && (topic.equals(pinsTopic) ? pinEvent(v) : engagement(v));
        if (!ok) MALFORMED.incrementAndGet();
      } catch (IOException e) {
        MALFORMED.incrementAndGet();
      }
      records++;
      PROCESSED.incrementAndGet();
    }

    private static boolean validId(String id) {
      return id != null && !id.isEmpty() && !id.contains(SEP);
    }

    private boolean engagement(JsonNode v) {
      String eventId = text(v, "event_id");
      String pin = text(v, "pin_id");
      String type = text(v, "type");
      if (!validId(eventId) || !validId(pin) || type == null) return false;
      String kind;
      String counted;
      if (type.equals("save")) {
        kind = "b";
        counted = fold(text(v, "board_title"));
      } else if (SEARCH_TYPES.contains(type)) {
        kind = "q";
        counted = fold(text(v, "query"));
      } else {
        return false;
      }
      if (counted.isEmpty()) return false;
      if (seen.get(eventId) != null) {
        DUPLICATES.incrementAndGet();
        return true;
      }
      seen.put(eventId, 1L);
      increment(pin + SEP + kind + SEP + counted);
      increment(pin + SEP + "n");
      dirty.put(pin, 1L);
      return true;
    }

    private void increment(String key) {
      Long n = counts.get(key);
      counts.put(key, n == null ? 1L : n + 1);
    }

    private boolean pinEvent(JsonNode v) throws IOException {
      String pin = text(v, "pin_id");
      String type = text(v, "type");
      if (!validId(pin) || type == null) return false;
      ObjectNode kept = JSON.createObjectNode();
      if (type.equals("deleted")) {
        kept.put("deleted", true);
      } else if (type.equals("created") || type.equals("updated")) {
        JsonNode link = v.path("link");
        kept.put("title", clean(text(v, "title")));
        kept.put("description", clean(text(v, "description")));
        kept.put("image", text(v, "image_url") != null);
        kept.put("link_url", link.isObject() ? text(link, "url") : null);
        kept.put("link_title", link.isObject() ? clean(text(link, "title")) : "");
        kept.put("link_description", link.isObject() ? clean(text(link, "description")) : "");
        kept.put("language", text(v, "language"));
      } else {
        return false;
      }
      pins.put(pin, JSON.writeValueAsBytes(kept));
      dirty.put(pin, 1L);
      return true;
    }

    /** Publish the document of every pin changed since the last flush, if its content changed. */
    private void flush() {
      long through = records;
      List<String> changed = new ArrayList<>();
      try (KeyValueIterator<String, Long> it = dirty.all()) {
        while (it.hasNext()) changed.add(it.next().key);
      }
      for (String pin : changed) {
        dirty.delete(pin);
        try {
          publish(pin);
        } catch (IOException e) {
          throw new IllegalStateException("cannot build the document of " + pin, e);
        }
      }
      flushedRecords = through;
    }

    private List<Counted> top(List<Counted> all) {
      // Highest count first, then by text (UTF-16 order, as JavaScript compares strings).
      all.sort((x, y) -> x.count != y.count ? Long.compare(y.count, x.count) : x.text.compareTo(y.text));
      return all.size() > topK ? all.subList(0, topK) : all;
    }

    private void publish(String pin) throws IOException {
      byte[] kept = pins.get(pin);
      JsonNode meta = kept == null ? JSON.createObjectNode() : JSON.readTree(kept);
      long now = System.currentTimeMillis();
      if (meta.path("deleted").asBoolean(false)) {
        if (emitted.get(pin) != null) {
          emitted.delete(pin);
          ctx.forward(new Record<>(pin, null, now));
          TOMBSTONES.incrementAndGet();
        }
        return;
      }
      // One scan over the pin's counters: "<pin>\1n", "<pin>\1b\1<title>", "<pin>\1q\1<query>".
      List<Counted> boards = new ArrayList<>();
      List<Counted> queries = new ArrayList<>();
      long n = 0;
      String prefix = pin + SEP;
      try (KeyValueIterator<String, Long> it = counts.prefixScan(prefix, new StringSerializer())) {
        while (it.hasNext()) {
          KeyValue<String, Long> kv = it.next();
          char kind = kv.key.charAt(prefix.length());
          if (kind == 'n') n = kv.value;
          else (kind == 'b' ? boards : queries).add(new Counted(kv.key.substring(prefix.length() + 2), kv.value));
        }
      }
      boards = top(boards);
      queries = top(queries);
      String language = text(meta, "language");
      ObjectNode doc = JSON.createObjectNode();
      doc.put("schema", "enriched_document");
      doc.put("schema_version", 1);
      doc.put("pin_id", pin);
      doc.put("language", language == null ? "und" : language);
      doc.put("language_source", language == null ? "unknown" : "event");
      doc.put("title", meta.path("title").asText(""));
      doc.put("description", meta.path("description").asText(""));
      doc.put("link_url", text(meta, "link_url"));
      doc.put("link_title", meta.path("link_title").asText(""));
      doc.put("link_description", meta.path("link_description").asText(""));
      doc.putNull("caption");
      doc.put("caption_status", meta.path("image").asBoolean(false) ? "pending" : "none");
      ArrayNode b = doc.putArray("board_titles");
      for (Counted c : boards) b.addObject().put("text", c.text).put("count", c.count);
      ArrayNode q = doc.putArray("engaged_queries");
      for (Counted c : queries) q.addObject().put("text", c.text).put("count", c.count);
      doc.put("engagement_count", n);
      doc.put("pin_text", pinText(doc, boards, queries));
      String hash = HexFormat.of().formatHex(sha256.digest(JSON.writeValueAsBytes(doc)));
      String previous = emitted.get(pin);
      if (previous != null && previous.endsWith(":" + hash)) {
        UNCHANGED.incrementAndGet();
        return;
      }
      long version = previous == null ? 1 : Long.parseLong(previous.substring(0, previous.indexOf(':'))) + 1;
      emitted.put(pin, version + ":" + hash);
      doc.put("content_hash", hash);
      doc.put("version", version);
      doc.put("updated_at", Instant.ofEpochMilli(now).toString());
      ctx.forward(new Record<>(pin, JSON.writeValueAsBytes(doc), now));
      DOCUMENTS.incrementAndGet();
    }

    /** The teacher's pin text, as src/core/document.ts assembles it. */
    private static String pinText(JsonNode d, List<Counted> boards, List<Counted> queries) {
      StringBuilder sb = new StringBuilder();
      line(sb, "Title", d.path("title").asText(""));
      line(sb, "Description", d.path("description").asText(""));
      line(sb, "Boards", String.join(" | ", boards.stream().map(Counted::text).toList()));
      line(sb, "Searches", String.join(" | ", queries.stream().map(Counted::text).toList()));
      line(sb, "Link title", d.path("link_title").asText(""));
      line(sb, "Link description", d.path("link_description").asText(""));
      return sb.toString();
    }

    private static void line(StringBuilder sb, String label, String value) {
      if (value.isEmpty()) return;
      if (sb.length() > 0) sb.append('\n');
      sb.append(label).append(": ").append(value);
    }
  }
}
