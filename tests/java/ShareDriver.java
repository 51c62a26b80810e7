/*
 * Java's KafkaShareConsumer and Admin against a broker, driven by tests/broker/test_java_share_consumer.py.
 *
 *   java ShareDriver <bootstrap> <step> [key=value ...] [-- <step> [key=value ...]] ...
 *
 * Steps run in order in one JVM (JVM start-ups are slow); every fact a test asserts on is printed to
 * stdout as one JSON object per line, {"step": <index>, "name": <step>, "event": <kind>, "t_ms": <ms
 * since start>, ...}.  A step that throws prints {"event": "error", "class": ..., "message": ...} and
 * the next step still runs; the exit status is 1 when any step failed or timed out, else 0.
 * Compiles against kafka-clients 4.2 and 4.4 (the share-group API, RENEW included, is the same in
 * both; share.acquire.mode is a 4.4 config, passed as a string).
 *
 * Steps (parameters in brackets have defaults):
 *   consume topic= group= [mode=explicit|implicit] [policy=...] [records=1] [limit=] [hold_ms=]
 *           [renew_every_ms=0] [pause_ms=0] [quiet_ms=0] [commit=sync|async|none] [rival=false]
 *           [client=] [timeout_ms=30000] [c.<consumer config>=<value> ...]
 *       one KafkaShareConsumer; prints each non-empty poll's size ("poll"), every record ("record":
 *       partition, offset, deliveryCount, value, ack), every commitSync result ("commit"), every
 *       acknowledgement commit callback ("callback") and acquisitionLockTimeoutMs ("lock_timeout").
 *       Explicit-mode policies: accept, reject, release (every delivery); cycle (first delivery by
 *       offset % 3: ACCEPT, RELEASE, REJECT; redeliveries ACCEPT); renew (RENEW until hold_ms after
 *       the first delivery, then ACCEPT; sleeps renew_every_ms between renewals); hold-half (one
 *       poll: every other record ACCEPTed, the rest held, then close).  Stops once `records`
 *       records are done (ACCEPTed or REJECTed; for release, delivered `limit` times), polls
 *       `quiet_ms` longer (anything delivered then is ACCEPTed and marked extra), commits, closes.
 *       pause_ms sleeps after each poll ("processing"); rival=true starts a second member of the
 *       group (explicit, ACCEPTs and reports what it gets) once the first records are held.
 *   poll-close topic= group= [mode=implicit] [timeout_ms=30000] [c.<consumer config>=<value> ...]
 *       polls until a poll returns records (printed, "record"), then closes without acknowledging or
 *       committing anything: what close() does with the last poll's records (docs/consumer.md).
 *   mode-rules topic= group= mode=implicit|explicit [timeout_ms=30000] [c.<config>=<value> ...]
 *       polls until a poll returns records ("poll" with its count, "record"), then tries what the
 *       acknowledgement mode forbids.  implicit: acknowledge(record, RELEASE) ("acknowledge").
 *       explicit: poll again without acknowledging ("poll_unacknowledged"), acknowledge every record
 *       ACCEPT ("acknowledged"), poll again ("poll_acknowledged"), acknowledge the first record again
 *       although it belongs to an earlier poll ("acknowledge_stale").  Each such event carries
 *       "error" (null, or the exception's class and message).  Then commitSync and close.
 *   poll-errors topic= group= [mode=explicit] [errors=2] [timeout_ms=30000] [c.<config>=<value> ...]
 *       polls until `errors` polls threw; every exception is printed ("poll_error": class, message,
 *       partition and offset for a RecordDeserializationException), every record too (ACCEPTed in
 *       explicit mode).  Keys and values are read as Object, so c.value.deserializer may be any
 *       Deserializer.  Then commitSync and close.
 *   member topic= group= [client=]      a background consumer (implicit mode) polling until
 *   stop-members                         ... this step (or the end of the run) closes them all.
 *   await-stdin                          waits for a line on stdin (the test runs tools meanwhile)
 *   admin-list                           listGroups (share groups, and all groups)
 *   admin-describe group= [members=N] [timeout_ms=20000]
 *                                        describeShareGroups (waits for N members, each assigned at
 *                                        the target assignment epoch)
 *   admin-offsets group= [topic= partitions=0,1]      listShareGroupOffsets
 *   admin-alter-offsets group= topic= offsets=0:5,1:7  alterShareGroupOffsets
 *   admin-delete-offsets group= topics=a,b             deleteShareGroupOffsets
 *   admin-delete-groups groups=a,b                     deleteShareGroups
 *   admin-alter-config group= [set.<name>=<value> ...] [delete=a,b]   incrementalAlterConfigs (GROUP)
 *   admin-describe-config group= [names=a,b]           describeConfigs (GROUP)
 */

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterShareGroupOffsetsResult;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DeleteShareGroupOffsetsResult;
import org.apache.kafka.clients.admin.DescribeShareGroupsOptions;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ShareGroupDescription;
import org.apache.kafka.clients.admin.ShareMemberDescription;
import org.apache.kafka.clients.admin.SharePartitionOffsetInfo;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.RecordDeserializationException;
import org.apache.kafka.common.serialization.StringDeserializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

public final class ShareDriver {

    private static final Duration POLL = Duration.ofMillis(100);
    private static final Duration COMMIT_TIMEOUT = Duration.ofSeconds(15);
    private static final long ADMIN_TIMEOUT_S = 20;
    private static final long START_MS = System.currentTimeMillis();

    private final String bootstrap;
    private Admin admin;
    private final List<Member> members = new ArrayList<>();
    private int stepIndex;
    private String stepName = "";

    private ShareDriver(String bootstrap) {
        this.bootstrap = bootstrap;
    }

    public static void main(String[] argv) {
        if (argv.length < 2) {
            System.err.println("usage: ShareDriver <bootstrap> <step> [key=value ...] [-- <step> ...]");
            System.exit(2);
        }
        ShareDriver driver = new ShareDriver(argv[0]);
        List<List<String>> steps = new ArrayList<>();
        List<String> current = new ArrayList<>();
        for (String arg : Arrays.asList(argv).subList(1, argv.length)) {
            if (arg.equals("--")) {
                if (!current.isEmpty()) steps.add(current);
                current = new ArrayList<>();
            } else {
                current.add(arg);
            }
        }
        if (!current.isEmpty()) steps.add(current);
        boolean ok = true;
        try {
            for (List<String> step : steps) {
                ok &= driver.run(step.get(0), params(step.subList(1, step.size())));
            }
        } finally {
            driver.closeAll();
        }
        System.out.flush();
        // Exit explicitly: a client thread left behind must not keep the JVM (and the test) waiting.
        System.exit(ok ? 0 : 1);
    }

    private static Map<String, String> params(List<String> args) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq < 0) throw new IllegalArgumentException("expected key=value, got " + arg);
            out.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        return out;
    }

    private boolean run(String name, Map<String, String> p) {
        stepIndex++;
        stepName = name;
        long started = System.nanoTime();
        try {
            boolean ok;
            switch (name) {
                case "consume": ok = consume(p); break;
                case "poll-close": ok = pollClose(p); break;
                case "mode-rules": ok = modeRules(p); break;
                case "poll-errors": ok = pollErrors(p); break;
                case "member": ok = startMember(p); break;
                case "stop-members": ok = stopMembers(); break;
                case "await-stdin": ok = awaitStdin(); break;
                case "admin-list": ok = adminList(); break;
                case "admin-describe": ok = adminDescribe(p); break;
                case "admin-offsets": ok = adminOffsets(p); break;
                case "admin-alter-offsets": ok = adminAlterOffsets(p); break;
                case "admin-delete-offsets": ok = adminDeleteOffsets(p); break;
                case "admin-delete-groups": ok = adminDeleteGroups(p); break;
                case "admin-alter-config": ok = adminAlterConfig(p); break;
                case "admin-describe-config": ok = adminDescribeConfig(p); break;
                default: throw new IllegalArgumentException("unknown step " + name);
            }
            emit("done", "ok", ok, "elapsed_ms", (System.nanoTime() - started) / 1_000_000);
            return ok;
        } catch (Throwable e) {
            Throwable cause = unwrap(e);
            emit("error", "class", cause.getClass().getName(), "message", String.valueOf(cause.getMessage()));
            return false;
        }
    }

    // ------------------------------------------------------------------ output

    private void emit(String event, Object... fields) {
        emitFrom(stepIndex, stepName, event, fields);
    }

    private static void emitFrom(int step, String name, String event, Object... fields) {
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("step", step);
        line.put("name", name);
        line.put("event", event);
        line.put("t_ms", System.currentTimeMillis() - START_MS);
        for (int i = 0; i + 1 < fields.length; i += 2) {
            line.put((String) fields[i], fields[i + 1]);
        }
        String text = Json.of(line);
        synchronized (System.out) {
            System.out.println(text);
            System.out.flush();
        }
    }

    private static Throwable unwrap(Throwable e) {
        while ((e instanceof ExecutionException || e instanceof java.util.concurrent.CompletionException)
                && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    private static Object error(Throwable e) {
        if (e == null) return null;
        Throwable cause = unwrap(e);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("class", cause.getClass().getName());
        out.put("message", String.valueOf(cause.getMessage()));
        return out;
    }

    private static Object futureError(KafkaFuture<?> future) {
        try {
            future.get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            return null;
        } catch (Exception e) {
            return error(e);
        }
    }

    // ------------------------------------------------------------------ share consumers

    private Properties consumerProps(Map<String, String> p, String mode) {
        Properties props = consumerProps(p.get("group"), mode, p.getOrDefault("client", ""));
        // c.<name>=<value>: any other consumer config (share.acquire.mode, max.poll.records...).
        p.forEach((k, v) -> {
            if (k.startsWith("c.")) props.put(k.substring(2), v);
        });
        return props;
    }

    private Properties consumerProps(String group, String mode, String client) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put("share.acknowledgement.mode", mode);
        if (client != null && !client.isEmpty()) props.put(ConsumerConfig.CLIENT_ID_CONFIG, client);
        return props;
    }

    /** What a consume step does with each record it gets, and when a record is finished with. */
    private static final class Policy {
        final String name;
        final int limit;
        final long holdMs;
        final Map<String, Long> firstSeen = new HashMap<>();

        Policy(String name, int limit, long holdMs) {
            this.name = name;
            this.limit = limit;
            this.holdMs = holdMs;
        }

        /** The acknowledgement for this delivery (null: none). */
        AcknowledgeType decide(ConsumerRecord<String, String> record, int deliveryCount, long nowMs) {
            switch (name) {
                case "accept":
                    return AcknowledgeType.ACCEPT;
                case "reject":
                    return AcknowledgeType.REJECT;
                case "release":
                    return AcknowledgeType.RELEASE;
                case "cycle":
                    // First delivery: offset % 3 == 0 ACCEPT, 1 RELEASE, 2 REJECT; redeliveries ACCEPT.
                    if (deliveryCount > 1) return AcknowledgeType.ACCEPT;
                    return new AcknowledgeType[] {
                        AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT
                    }[(int) (record.offset() % 3)];
                case "renew": {
                    long first = firstSeen.computeIfAbsent(key(record), k -> nowMs);
                    return nowMs - first < holdMs ? AcknowledgeType.RENEW : AcknowledgeType.ACCEPT;
                }
                default:
                    throw new IllegalArgumentException("unknown policy " + name);
            }
        }

        /** Whether this delivery, so acknowledged, ends the record's part in the step. */
        boolean done(int deliveryCount, AcknowledgeType ack) {
            if (name.equals("release")) return deliveryCount >= limit;
            return ack == AcknowledgeType.ACCEPT || ack == AcknowledgeType.REJECT;
        }
    }

    private static String key(ConsumerRecord<?, ?> record) {
        return record.topic() + "-" + record.partition() + "@" + record.offset();
    }

    private static Map<String, Object> recordFields(ConsumerRecord<String, String> record) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("topic", record.topic());
        out.put("partition", record.partition());
        out.put("offset", record.offset());
        out.put("deliveryCount", record.deliveryCount().map(c -> (Object) (int) c).orElse(null));
        out.put("value", record.value());
        return out;
    }

    private boolean consume(Map<String, String> p) throws Exception {
        String topic = p.get("topic");
        String group = p.get("group");
        String mode = p.getOrDefault("mode", "explicit");
        String policyName = p.getOrDefault("policy", mode.equals("implicit") ? "implicit" : "accept");
        int records = Integer.parseInt(p.getOrDefault("records", "1"));
        long quietMs = Long.parseLong(p.getOrDefault("quiet_ms", "0"));
        long timeoutMs = Long.parseLong(p.getOrDefault("timeout_ms", "30000"));
        String commit = p.getOrDefault("commit", "sync");
        boolean explicit = mode.equals("explicit");
        boolean holdHalf = policyName.equals("hold-half");
        long renewEveryMs = Long.parseLong(p.getOrDefault("renew_every_ms", "0"));
        long pauseMs = Long.parseLong(p.getOrDefault("pause_ms", "0"));
        Policy policy = new Policy(policyName, Integer.parseInt(p.getOrDefault("limit", "0")),
            Long.parseLong(p.getOrDefault("hold_ms", "0")));
        final int step = stepIndex;
        final String name = stepName;
        long deadline = System.currentTimeMillis() + timeoutMs;

        Member rival = null;
        boolean ok = true;
        try (KafkaShareConsumer<String, String> consumer =
                 new KafkaShareConsumer<>(consumerProps(p, mode))) {
            consumer.setAcknowledgementCommitCallback((offsets, exception) -> {
                Map<String, Object> parts = new TreeMap<>();
                for (Map.Entry<TopicIdPartition, Set<Long>> entry : offsets.entrySet()) {
                    parts.put(entry.getKey().topic() + "-" + entry.getKey().partition(),
                        new ArrayList<>(new TreeSet<>(entry.getValue())));
                }
                emitFrom(step, name, "callback", "offsets", parts, "exception", error(exception));
            });
            consumer.subscribe(List.of(topic));
            Set<String> done = new HashSet<>();
            boolean lockReported = false;
            long quietUntil = -1;
            while (true) {
                long now = System.currentTimeMillis();
                if (quietUntil < 0 && done.size() >= records) quietUntil = now + quietMs;
                if (quietUntil >= 0 && now >= quietUntil) break;
                if (now > deadline) {
                    emit("timeout", "done", done.size(), "wanted", records);
                    ok = false;
                    break;
                }
                ConsumerRecords<String, String> polled = consumer.poll(POLL);
                if (polled.isEmpty()) continue;
                emit("poll", "count", polled.count());
                if (!lockReported) {
                    emit("lock_timeout", "ms", consumer.acquisitionLockTimeoutMs().orElse(null));
                    lockReported = true;
                }
                if (rival == null && p.getOrDefault("rival", "false").equals("true")) {
                    // Joins while this member holds its records: it must not get any of them.
                    rival = new Member(consumerProps(group, "explicit", "rival"), topic, step, name, true);
                    rival.start();
                }
                boolean extra = quietUntil >= 0;
                boolean renewed = false;
                int index = 0;
                for (ConsumerRecord<String, String> record : polled) {
                    int count = record.deliveryCount().map(c -> (int) c).orElse(-1);
                    Map<String, Object> fields = recordFields(record);
                    fields.put("consumer", "main");
                    fields.put("extra", extra);
                    AcknowledgeType ack = null;
                    if (holdHalf) {
                        // Every other record of the first poll is accepted; the rest are held at close.
                        if (index++ % 2 == 0) ack = AcknowledgeType.ACCEPT;
                    } else if (policyName.equals("implicit")) {
                        done.add(key(record));
                    } else {
                        ack = extra ? AcknowledgeType.ACCEPT : policy.decide(record, count, System.currentTimeMillis());
                        if (policy.done(count, ack)) done.add(key(record));
                    }
                    if (ack != null) consumer.acknowledge(record, ack);
                    renewed |= ack == AcknowledgeType.RENEW;
                    fields.put("ack", ack == null ? (explicit ? "HELD" : "IMPLICIT") : ack.name());
                    emitLine(step, name, "record", fields);
                }
                if (pauseMs > 0) Thread.sleep(pauseMs);  // "processing" each poll's records
                if (renewed && renewEveryMs > 0) {
                    // Processing that outlasts the lock: the records stay held, renewed once per interval.
                    Thread.sleep(renewEveryMs);
                }
                if (explicit && commit.equals("sync")) {
                    emitCommit(consumer.commitSync(COMMIT_TIMEOUT));
                } else if (explicit && commit.equals("async")) {
                    consumer.commitAsync();
                }
                if (holdHalf) break;  // close holding the rest
            }
            if (!explicit || !commit.equals("none")) {
                emitCommit(consumer.commitSync(COMMIT_TIMEOUT));
            }
            long closeStart = System.nanoTime();
            consumer.close(Duration.ofSeconds(20));
            emit("closed", "elapsed_ms", (System.nanoTime() - closeStart) / 1_000_000);
        } finally {
            if (rival != null) rival.close();
        }
        return ok;
    }

    // ------------------------------------------------------------------ parity probes (docs/consumer.md)

    /** Polls (100 ms each) until a poll returns records or `timeout_ms` passes (then throws). */
    private static <K, V> ConsumerRecords<K, V> firstRecords(KafkaShareConsumer<K, V> consumer, long timeoutMs) {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            ConsumerRecords<K, V> polled = consumer.poll(POLL);
            if (!polled.isEmpty()) return polled;
        }
        throw new IllegalStateException("no records within " + timeoutMs + " ms");
    }

    private static Map<String, Object> anyRecordFields(ConsumerRecord<?, ?> record, String ack) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("topic", record.topic());
        out.put("partition", record.partition());
        out.put("offset", record.offset());
        out.put("deliveryCount", record.deliveryCount().map(c -> (Object) (int) c).orElse(null));
        out.put("value", String.valueOf((Object) record.value()));
        out.put("consumer", "main");
        out.put("ack", ack);
        return out;
    }

    /** What `action` threw (null: nothing), for an event's "error" field. */
    private static Object attempt(Runnable action) {
        try {
            action.run();
            return null;
        } catch (RuntimeException e) {
            return error(e);
        }
    }

    private boolean pollClose(Map<String, String> p) throws Exception {
        String mode = p.getOrDefault("mode", "implicit");
        long timeoutMs = Long.parseLong(p.getOrDefault("timeout_ms", "30000"));
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(consumerProps(p, mode))) {
            consumer.subscribe(List.of(p.get("topic")));
            ConsumerRecords<String, String> polled = firstRecords(consumer, timeoutMs);
            emit("poll", "count", polled.count());
            for (ConsumerRecord<String, String> record : polled) {
                emitLine(stepIndex, stepName, "record", anyRecordFields(record, mode.equals("implicit") ? "IMPLICIT" : "HELD"));
            }
            long closeStart = System.nanoTime();
            consumer.close(Duration.ofSeconds(20));  // no commitSync, no further poll
            emit("closed", "elapsed_ms", (System.nanoTime() - closeStart) / 1_000_000);
        }
        return true;
    }

    private boolean modeRules(Map<String, String> p) throws Exception {
        String mode = p.get("mode");
        long timeoutMs = Long.parseLong(p.getOrDefault("timeout_ms", "30000"));
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(consumerProps(p, mode))) {
            consumer.subscribe(List.of(p.get("topic")));
            ConsumerRecords<String, String> polled = firstRecords(consumer, timeoutMs);
            emit("poll", "count", polled.count());
            List<ConsumerRecord<String, String>> records = new ArrayList<>();
            for (ConsumerRecord<String, String> record : polled) {
                records.add(record);
                emitLine(stepIndex, stepName, "record", anyRecordFields(record, mode.equals("implicit") ? "IMPLICIT" : "HELD"));
            }
            ConsumerRecord<String, String> first = records.get(0);
            if (mode.equals("implicit")) {
                emit("acknowledge", "error", attempt(() -> consumer.acknowledge(first, AcknowledgeType.RELEASE)));
            } else {
                Object[] count = {null};
                emit("poll_unacknowledged", "error", attempt(() -> count[0] = consumer.poll(POLL).count()), "count", count[0]);
                emit("acknowledged", "error", attempt(() -> {
                    for (ConsumerRecord<String, String> record : records) consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                }));
                count[0] = null;
                emit("poll_acknowledged", "error", attempt(() -> count[0] = consumer.poll(POLL).count()), "count", count[0]);
                emit("acknowledge_stale", "error", attempt(() -> consumer.acknowledge(first, AcknowledgeType.ACCEPT)));
            }
            emitCommit(consumer.commitSync(COMMIT_TIMEOUT));
            consumer.close(Duration.ofSeconds(20));
            emit("closed");
        }
        return true;
    }

    private boolean pollErrors(Map<String, String> p) throws Exception {
        String mode = p.getOrDefault("mode", "explicit");
        int wanted = Integer.parseInt(p.getOrDefault("errors", "2"));
        long deadline = System.currentTimeMillis() + Long.parseLong(p.getOrDefault("timeout_ms", "30000"));
        int errors = 0;
        try (KafkaShareConsumer<Object, Object> consumer = new KafkaShareConsumer<>(consumerProps(p, mode))) {
            consumer.subscribe(List.of(p.get("topic")));
            while (errors < wanted) {
                if (System.currentTimeMillis() > deadline) {
                    emit("timeout", "errors", errors, "wanted", wanted);
                    return false;
                }
                ConsumerRecords<Object, Object> polled;
                try {
                    polled = consumer.poll(POLL);
                } catch (RecordDeserializationException e) {
                    errors++;
                    emit("poll_error", "class", e.getClass().getName(), "message", String.valueOf(e.getMessage()),
                        "partition", e.topicPartition().partition(), "offset", e.offset(), "origin", e.origin().name());
                    continue;
                } catch (RuntimeException e) {
                    errors++;
                    emit("poll_error", "class", e.getClass().getName(), "message", String.valueOf(e.getMessage()));
                    continue;
                }
                for (ConsumerRecord<Object, Object> record : polled) {
                    boolean explicit = mode.equals("explicit");
                    if (explicit) consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                    emitLine(stepIndex, stepName, "record", anyRecordFields(record, explicit ? "ACCEPT" : "IMPLICIT"));
                }
            }
            emitCommit(consumer.commitSync(COMMIT_TIMEOUT));
            consumer.close(Duration.ofSeconds(20));
            emit("closed");
        }
        return true;
    }

    private void emitCommit(Map<TopicIdPartition, Optional<org.apache.kafka.common.KafkaException>> results) {
        if (results.isEmpty()) {
            emit("commit", "results", new TreeMap<>());
            return;
        }
        Map<String, Object> out = new TreeMap<>();
        results.forEach((tip, error) -> out.put(tip.topic() + "-" + tip.partition(), error(error.orElse(null))));
        emit("commit", "results", out);
    }

    private static void emitLine(int step, String name, String event, Map<String, Object> fields) {
        List<Object> flat = new ArrayList<>();
        fields.forEach((k, v) -> {
            flat.add(k);
            flat.add(v);
        });
        emitFrom(step, name, event, flat.toArray());
    }

    /** A consumer polling on its own thread until closed: a live group member, or a rival. */
    private static final class Member extends Thread {
        private final Properties props;
        private final String topic;
        private final int step;
        private final String stepName;
        private final boolean report;
        private final AtomicBoolean running = new AtomicBoolean(true);

        Member(Properties props, String topic, int step, String stepName, boolean report) {
            super("member-" + props.getProperty(ConsumerConfig.CLIENT_ID_CONFIG, ""));
            this.props = props;
            this.topic = topic;
            this.step = step;
            this.stepName = stepName;
            this.report = report;
            setDaemon(true);
        }

        @Override
        public void run() {
            String mode = props.getProperty("share.acknowledgement.mode");
            try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(props)) {
                consumer.subscribe(List.of(topic));
                while (running.get()) {
                    ConsumerRecords<String, String> polled = consumer.poll(POLL);
                    for (ConsumerRecord<String, String> record : polled) {
                        if (mode.equals("explicit")) consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                        if (report) {
                            Map<String, Object> fields = recordFields(record);
                            fields.put("consumer", props.getProperty(ConsumerConfig.CLIENT_ID_CONFIG));
                            fields.put("ack", mode.equals("explicit") ? "ACCEPT" : "IMPLICIT");
                            emitLine(step, stepName, "record", fields);
                        }
                    }
                    if (!polled.isEmpty()) consumer.commitSync(COMMIT_TIMEOUT);
                }
                consumer.close(Duration.ofSeconds(20));
            } catch (Throwable e) {
                emitFrom(step, stepName, "member_error", "client", getName(), "error", error(e));
            }
        }

        void close() throws InterruptedException {
            running.set(false);
            join(30_000);
        }
    }

    private boolean startMember(Map<String, String> p) {
        Member member = new Member(consumerProps(p.get("group"), "implicit", p.getOrDefault("client", "member")),
            p.get("topic"), stepIndex, stepName, false);
        member.start();
        members.add(member);
        return true;
    }

    /** Blocks until the test writes a line (or closes stdin): the test runs tools meanwhile. */
    private boolean awaitStdin() throws java.io.IOException {
        emit("waiting");
        new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine();
        return true;
    }

    private boolean stopMembers() throws InterruptedException {
        for (Member member : members) member.close();
        members.clear();
        return true;
    }

    private void closeAll() {
        try {
            stopMembers();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (admin != null) admin.close(Duration.ofSeconds(10));
    }

    // ------------------------------------------------------------------ admin

    private Admin admin() {
        if (admin == null) {
            Properties props = new Properties();
            props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");
            props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
            admin = Admin.create(props);
        }
        return admin;
    }

    private static List<String> list(String value) {
        List<String> out = new ArrayList<>();
        if (value == null || value.isEmpty()) return out;
        for (String item : value.split(",")) out.add(item.trim());
        return out;
    }

    private static Map<String, Object> listing(GroupListing group) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("group", group.groupId());
        out.put("type", group.type().map(Object::toString).orElse(null));
        out.put("protocol", group.protocol());
        out.put("state", group.groupState().map(Object::toString).orElse(null));
        return out;
    }

    private boolean adminList() throws Exception {
        List<Object> share = new ArrayList<>();
        for (GroupListing group : admin().listGroups(ListGroupsOptions.forShareGroups()).all()
                .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS)) {
            share.add(listing(group));
        }
        List<Object> all = new ArrayList<>();
        for (GroupListing group : admin().listGroups().all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS)) {
            all.add(listing(group));
        }
        emit("groups", "share", share, "all", all);
        return true;
    }

    private static Map<String, Object> description(ShareGroupDescription d) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("group", d.groupId());
        out.put("state", d.groupState().toString());
        out.put("coordinator", d.coordinator() == null ? null : d.coordinator().id());
        out.put("groupEpoch", d.groupEpoch());
        out.put("targetAssignmentEpoch", d.targetAssignmentEpoch());
        Set<AclOperation> ops = d.authorizedOperations();
        List<Object> opNames = new ArrayList<>();
        if (ops != null) {
            for (AclOperation op : new TreeSet<>(ops)) opNames.add(op.toString());
        }
        out.put("authorizedOperations", ops == null ? null : opNames);
        List<Object> members = new ArrayList<>();
        for (ShareMemberDescription m : d.members()) {
            Map<String, Object> member = new LinkedHashMap<>();
            member.put("memberId", m.consumerId());
            member.put("clientId", m.clientId());
            member.put("host", m.host());
            member.put("rackId", m.rackId().orElse(null));
            member.put("memberEpoch", m.memberEpoch());
            List<Object> parts = new ArrayList<>();
            for (TopicPartition tp : m.assignment().topicPartitions()) parts.add(tp.topic() + "-" + tp.partition());
            parts.sort(null);
            member.put("assignment", parts);
            members.add(member);
        }
        out.put("members", members);
        return out;
    }

    private boolean adminDescribe(Map<String, String> p) throws Exception {
        String group = p.get("group");
        int want = Integer.parseInt(p.getOrDefault("members", "-1"));
        long deadline = System.currentTimeMillis() + Long.parseLong(p.getOrDefault("timeout_ms", "20000"));
        while (true) {
            ShareGroupDescription d;
            try {
                d = admin()
                    .describeShareGroups(List.of(group), new DescribeShareGroupsOptions().includeAuthorizedOperations(true))
                    .describedGroups().get(group).get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                // The members may not have joined yet (the group does not exist until the first one has).
                if (want < 0 || !(e.getCause() instanceof GroupIdNotFoundException)
                        || System.currentTimeMillis() > deadline) throw e;
                Thread.sleep(100);
                continue;
            }
            // Settled: `want` members, each with a non-empty assignment at the target assignment epoch.
            boolean settled = want < 0 || (d.members().size() == want
                && d.members().stream().allMatch(m -> !m.assignment().topicPartitions().isEmpty()
                    && m.memberEpoch() == d.targetAssignmentEpoch()));
            if (settled || System.currentTimeMillis() > deadline) {
                emit("description", "settled", settled, "description", description(d));
                return settled;
            }
            Thread.sleep(100);  // waiting for the members' assignments (bounded by the deadline)
        }
    }

    private boolean adminOffsets(Map<String, String> p) throws Exception {
        String group = p.get("group");
        ListShareGroupOffsetsSpec spec = new ListShareGroupOffsetsSpec();
        if (p.containsKey("topic")) {
            List<TopicPartition> parts = new ArrayList<>();
            for (String partition : list(p.getOrDefault("partitions", "0"))) {
                parts.add(new TopicPartition(p.get("topic"), Integer.parseInt(partition)));
            }
            spec.topicPartitions(parts);
        }
        Map<TopicPartition, SharePartitionOffsetInfo> result = admin()
            .listShareGroupOffsets(Map.of(group, spec)).partitionsToOffsetInfo(group)
            .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        Map<String, Object> out = new TreeMap<>();
        result.forEach((tp, info) -> {
            Map<String, Object> fields = new LinkedHashMap<>();
            if (info == null) {
                out.put(tp.topic() + "-" + tp.partition(), null);
                return;
            }
            fields.put("startOffset", info.startOffset());
            fields.put("leaderEpoch", info.leaderEpoch().orElse(null));
            fields.put("lag", info.lag().orElse(null));
            out.put(tp.topic() + "-" + tp.partition(), fields);
        });
        emit("offsets", "group", group, "offsets", out);
        return true;
    }

    private boolean adminAlterOffsets(Map<String, String> p) throws Exception {
        String group = p.get("group");
        Map<TopicPartition, Long> offsets = new LinkedHashMap<>();
        for (String item : list(p.get("offsets"))) {
            String[] parts = item.split(":");
            offsets.put(new TopicPartition(p.get("topic"), Integer.parseInt(parts[0])), Long.parseLong(parts[1]));
        }
        AlterShareGroupOffsetsResult result = admin().alterShareGroupOffsets(group, offsets);
        Map<String, Object> out = new TreeMap<>();
        for (TopicPartition tp : offsets.keySet()) {
            out.put(tp.topic() + "-" + tp.partition(), futureError(result.partitionResult(tp)));
        }
        emit("altered", "results", out, "all", futureError(result.all()));
        return true;
    }

    private boolean adminDeleteOffsets(Map<String, String> p) throws Exception {
        String group = p.get("group");
        Set<String> topics = new TreeSet<>(list(p.get("topics")));
        DeleteShareGroupOffsetsResult result = admin().deleteShareGroupOffsets(group, topics);
        Map<String, Object> out = new TreeMap<>();
        for (String topic : topics) out.put(topic, futureError(result.topicResult(topic)));
        emit("deleted_offsets", "results", out, "all", futureError(result.all()));
        return true;
    }

    private boolean adminDeleteGroups(Map<String, String> p) throws Exception {
        Map<String, KafkaFuture<Void>> result = admin().deleteShareGroups(list(p.get("groups"))).deletedGroups();
        Map<String, Object> out = new TreeMap<>();
        result.forEach((group, future) -> out.put(group, futureError(future)));
        emit("deleted_groups", "results", out);
        return true;
    }

    private boolean adminAlterConfig(Map<String, String> p) throws Exception {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.GROUP, p.get("group"));
        List<AlterConfigOp> ops = new ArrayList<>();
        p.forEach((k, v) -> {
            if (k.startsWith("set.")) {
                ops.add(new AlterConfigOp(new ConfigEntry(k.substring(4), v), AlterConfigOp.OpType.SET));
            }
        });
        for (String name : list(p.get("delete"))) {
            ops.add(new AlterConfigOp(new ConfigEntry(name, ""), AlterConfigOp.OpType.DELETE));
        }
        Map<ConfigResource, Collection<AlterConfigOp>> request = Map.of(resource, ops);
        emit("altered_config", "error", futureError(admin().incrementalAlterConfigs(request).all()));
        return true;
    }

    private boolean adminDescribeConfig(Map<String, String> p) throws Exception {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.GROUP, p.get("group"));
        Config config = admin().describeConfigs(List.of(resource)).values().get(resource)
            .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        Set<String> names = new HashSet<>(list(p.get("names")));
        Map<String, Object> out = new TreeMap<>();
        for (ConfigEntry entry : config.entries()) {
            if (!names.isEmpty() && !names.contains(entry.name())) continue;
            Map<String, Object> fields = new LinkedHashMap<>();
            fields.put("value", entry.value());
            fields.put("source", entry.source().toString());
            fields.put("isDefault", entry.isDefault());
            fields.put("readOnly", entry.isReadOnly());
            fields.put("sensitive", entry.isSensitive());
            fields.put("type", entry.type().toString());
            out.put(entry.name(), fields);
        }
        emit("config", "entries", out);
        return true;
    }

    // ------------------------------------------------------------------ JSON

    /** Just enough JSON for the driver's own output: maps, lists, strings, numbers, booleans, null. */
    static final class Json {
        static String of(Object value) {
            StringBuilder out = new StringBuilder();
            write(out, value);
            return out.toString();
        }

        private static void write(StringBuilder out, Object value) {
            if (value == null) {
                out.append("null");
            } else if (value instanceof Optional) {
                write(out, ((Optional<?>) value).orElse(null));
            } else if (value instanceof Map) {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                    if (!first) out.append(',');
                    first = false;
                    string(out, String.valueOf(entry.getKey()));
                    out.append(':');
                    write(out, entry.getValue());
                }
                out.append('}');
            } else if (value instanceof Collection) {
                out.append('[');
                boolean first = true;
                for (Object item : (Collection<?>) value) {
                    if (!first) out.append(',');
                    first = false;
                    write(out, item);
                }
                out.append(']');
            } else if (value instanceof Number || value instanceof Boolean) {
                out.append(value);
            } else {
                string(out, value.toString());
            }
        }

        private static void string(StringBuilder out, String text) {
            out.append('"');
            for (int i = 0; i < text.length(); i++) {
                char c = text.charAt(i);
                switch (c) {
                    case '"': out.append("\\\""); break;
                    case '\\': out.append("\\\\"); break;
                    case '\n': out.append("\\n"); break;
                    case '\r': out.append("\\r"); break;
                    case '\t': out.append("\\t"); break;
                    default:
                        if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                        else out.append(c);
                }
            }
            out.append('"');
        }
    }
}
