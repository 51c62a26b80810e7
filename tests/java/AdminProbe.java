/*
 * Kafka's own admin tools and Admin client in one long-lived JVM, for tests/realkafka/test_admin_real_kafka.py.
 *
 *   java AdminProbe <bootstrap>
 *
 * Reads one request per line on stdin, a JSON array of strings, and answers each with one line on
 * stdout, "@@answer " and a JSON object: {"rc": <exit status>, "stdout": ..., "stderr": ...,
 * "result": ..., "error": ...}.  A JVM
 * start costs about a second; served from here, a tool run costs what its Admin calls cost.
 *
 *   ["tool", <main class>, <arg>...]   runs a Kafka tool's main() in this JVM (ShareGroupCommand,
 *                                      ConfigCommand, ...) on a thread of its own, System.out/err
 *                                      captured; Kafka's Exit.exit ends the run as System.exit ends
 *                                      the tool's JVM (that thread never returns into the tool).
 *                                      "rc" is the exit status (0 when main returned, 1 when it threw).
 *   ["describe", <group>]              describeShareGroups: state, epochs, coordinator, members with
 *                                      rack ids (which kafka-share-groups does not print).
 *   ["offsets", <group>]               listShareGroupOffsets: {"topic:partition": {start, epoch, lag}}.
 *   ["alter-offsets", <group>, <topic>, "p:offset,..."]   alterShareGroupOffsets, sent as is (the tool
 *                                      checks the group's state itself and never sends it for a
 *                                      non-empty group; this shows what the broker answers).
 *   ["delete-offsets", <group>, <topic>...]   deleteShareGroupOffsets: "error" for the whole call,
 *                                      "result" per topic.
 *   ["delete-groups", <group>...]      deleteShareGroups (DeleteGroups, no client-side state check).
 *   ["list-offsets", <topic>, earliest|latest|<epoch ms>]   listOffsets for every partition:
 *                                      {"partition": offset}, -1 where no record is at or after a time.
 *
 * An Admin call's failure is {"error": {"class", "code", "name", "message"}} with Kafka's error code
 * (Errors.forException).  Log4j is initialised before any capture, so the tools' WARN lines go to this
 * process's real stderr.  Compiles against kafka-clients and kafka-tools 4.2 and 4.4 (Exit moved to
 * org.apache.kafka.common.utils.internals in 4.3; it is found by reflection).
 */

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DeleteShareGroupOffsetsResult;
import org.apache.kafka.clients.admin.DeleteShareGroupsResult;
import org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.ShareGroupDescription;
import org.apache.kafka.clients.admin.ShareMemberDescription;
import org.apache.kafka.clients.admin.SharePartitionOffsetInfo;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.protocol.Errors;

import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.LockSupport;

public final class AdminProbe {

    private static final long ADMIN_TIMEOUT_S = 30;
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Marks answer lines: anything else on stdout (a tool printing after its run) is not one. */
    private static final String ANSWER_PREFIX = "@@answer ";

    /** How long a tool may run before its answer is a timeout (rc -1). */
    private static final long TOOL_TIMEOUT_S = 50;

    /** The status the tool run in progress ends with. */
    private static volatile CompletableFuture<Integer> toolStatus;
    /** Set on the threads that run a tool's main(). */
    private static final ThreadLocal<Boolean> TOOL_MAIN = ThreadLocal.withInitial(() -> false);

    private final Admin admin;
    private final PrintStream realOut;
    private final PrintStream realErr;

    private AdminProbe(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(ADMIN_TIMEOUT_S * 1000));
        this.admin = Admin.create(props);
        this.realOut = System.out;
        this.realErr = System.err;
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length != 1) {
            System.err.println("usage: AdminProbe <bootstrap>");
            System.exit(2);
        }
        // Log4j binds its console appender to the stderr of the moment: bind it to the real one now.
        org.slf4j.LoggerFactory.getLogger(AdminProbe.class).isWarnEnabled();
        interceptExit();
        AdminProbe probe = new AdminProbe(argv[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        try {
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) continue;
                Map<String, Object> answer = probe.serve(JSON.readValue(line, String[].class));
                probe.realOut.println(ANSWER_PREFIX + JSON.writeValueAsString(answer));
                probe.realOut.flush();
            }
        } finally {
            probe.admin.close();
        }
        // Tool threads left behind must not keep the JVM alive once stdin is closed.
        Runtime.getRuntime().halt(0);
    }

    /**
     * Exit.exit and Exit.halt end the tool run, as System.exit ends the tool's JVM: the status is
     * recorded and the calling thread never returns into the tool.  (Throwing instead would not do:
     * kafka-share-groups catches every Throwable around code that exits, and prints it.)
     */
    private static void interceptExit() throws Exception {
        Class<?> exit;
        try {
            exit = Class.forName("org.apache.kafka.common.utils.internals.Exit");
        } catch (ClassNotFoundException e) {
            exit = Class.forName("org.apache.kafka.common.utils.Exit");
        }
        Class<?> procedure = Class.forName(exit.getName() + "$Procedure");
        Object parker = Proxy.newProxyInstance(AdminProbe.class.getClassLoader(), new Class<?>[]{procedure},
            (proxy, method, args) -> {
                if (method.getName().equals("toString")) return "AdminProbe exit interceptor";
                if (!method.getName().equals("execute")) return null;
                CompletableFuture<Integer> status = toolStatus;
                if (status != null) status.complete((Integer) args[0]);
                if (TOOL_MAIN.get()) {
                    while (true) LockSupport.park();
                }
                throw new IllegalStateException("exit " + args[0] + " outside a tool's main thread");
            });
        exit.getMethod("setExitProcedure", procedure).invoke(null, parker);
        exit.getMethod("setHaltProcedure", procedure).invoke(null, parker);
    }

    private Map<String, Object> serve(String[] request) {
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("rc", 0);
        answer.put("stdout", "");
        answer.put("stderr", "");
        answer.put("result", null);
        answer.put("error", null);
        try {
            String op = request[0];
            List<String> args = Arrays.asList(request).subList(1, request.length);
            switch (op) {
                case "tool" -> runTool(args.get(0), args.subList(1, args.size()), answer);
                case "describe" -> answer.put("result", describe(args.get(0)));
                case "offsets" -> answer.put("result", offsets(args.get(0)));
                case "alter-offsets" -> alterOffsets(args.get(0), args.get(1), args.get(2));
                case "delete-offsets" -> answer.put("result", deleteOffsets(args.get(0), args.subList(1, args.size()), answer));
                case "delete-groups" -> answer.put("result", deleteGroups(args));
                case "list-offsets" -> answer.put("result", listOffsets(args.get(0), args.get(1)));
                default -> throw new IllegalArgumentException("unknown request " + op);
            }
        } catch (ExecutionException e) {
            answer.put("rc", 1);
            answer.put("error", error(e.getCause()));
        } catch (Throwable e) {
            answer.put("rc", 1);
            answer.put("error", error(e));
        }
        return answer;
    }

    // -- the tools ------------------------------------------------------------------------------

    private void runTool(String mainClass, List<String> args, Map<String, Object> answer) throws Exception {
        Method main = Class.forName(mainClass).getMethod("main", String[].class);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream toolOut = new PrintStream(out, true, StandardCharsets.UTF_8);
        PrintStream toolErr = new PrintStream(err, true, StandardCharsets.UTF_8);
        CompletableFuture<Integer> status = new CompletableFuture<>();
        Thread thread = new Thread(() -> {
            TOOL_MAIN.set(true);
            try {
                main.invoke(null, (Object) args.toArray(new String[0]));
                status.complete(0);
            } catch (InvocationTargetException e) {
                // What the JVM does with an exception thrown out of main().
                toolErr.print("Exception in thread \"main\" ");
                e.getCause().printStackTrace(toolErr);
                status.complete(1);
            } catch (Throwable e) {
                e.printStackTrace(toolErr);
                status.complete(1);
            }
        }, "tool-main");
        thread.setDaemon(true);
        toolStatus = status;
        System.setOut(toolOut);
        System.setErr(toolErr);
        int rc;
        try {
            thread.start();
            rc = status.get(TOOL_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            rc = -1;
            toolErr.println("AdminProbe: the tool did not finish within " + TOOL_TIMEOUT_S + " s");
        } finally {
            toolOut.flush();
            toolErr.flush();
            System.setOut(realOut);
            System.setErr(realErr);
            toolStatus = null;
        }
        answer.put("rc", rc);
        answer.put("stdout", out.toString(StandardCharsets.UTF_8));
        answer.put("stderr", err.toString(StandardCharsets.UTF_8));
    }

    // -- Admin calls ----------------------------------------------------------------------------

    private Map<String, Object> describe(String group) throws Exception {
        ShareGroupDescription d = admin.describeShareGroups(List.of(group)).describedGroups().get(group)
            .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("group", d.groupId());
        out.put("state", d.groupState().toString());
        out.put("group_epoch", d.groupEpoch());
        out.put("assignment_epoch", d.targetAssignmentEpoch());
        out.put("coordinator", d.coordinator() == null ? null
            : Map.of("id", d.coordinator().id(), "host", d.coordinator().host(), "port", d.coordinator().port()));
        List<Map<String, Object>> members = new ArrayList<>();
        for (ShareMemberDescription m : d.members()) {
            Map<String, Object> member = new LinkedHashMap<>();
            member.put("member_id", m.consumerId());
            member.put("client_id", m.clientId());
            member.put("host", m.host());
            member.put("rack_id", m.rackId().orElse(null));
            member.put("member_epoch", m.memberEpoch());
            Map<String, List<Integer>> assignment = new TreeMap<>();
            for (TopicPartition tp : m.assignment().topicPartitions()) {
                assignment.computeIfAbsent(tp.topic(), t -> new ArrayList<>()).add(tp.partition());
            }
            assignment.values().forEach(ps -> ps.sort(null));
            member.put("assignment", assignment);
            members.add(member);
        }
        out.put("members", members);
        return out;
    }

    private Map<String, Object> offsets(String group) throws Exception {
        Map<TopicPartition, SharePartitionOffsetInfo> found = admin
            .listShareGroupOffsets(Map.of(group, new ListShareGroupOffsetsSpec()))
            .partitionsToOffsetInfo(group)
            .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        Map<String, Object> out = new TreeMap<>();
        found.forEach((tp, info) -> {
            if (info == null) {
                out.put(tp.topic() + ":" + tp.partition(), null);
            } else {
                Map<String, Object> one = new LinkedHashMap<>();
                one.put("start_offset", info.startOffset());
                one.put("leader_epoch", info.leaderEpoch().orElse(null));
                one.put("lag", info.lag().orElse(null));
                out.put(tp.topic() + ":" + tp.partition(), one);
            }
        });
        return out;
    }

    private void alterOffsets(String group, String topic, String spec) throws Exception {
        Map<TopicPartition, Long> offsets = new LinkedHashMap<>();
        for (String item : spec.split(",")) {
            String[] pair = item.split(":");
            offsets.put(new TopicPartition(topic, Integer.parseInt(pair[0])), Long.parseLong(pair[1]));
        }
        admin.alterShareGroupOffsets(group, offsets).all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
    }

    private Map<String, Object> deleteOffsets(String group, List<String> topics, Map<String, Object> answer)
        throws Exception {
        DeleteShareGroupOffsetsResult result = admin.deleteShareGroupOffsets(group, new HashSet<>(topics));
        try {
            result.all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            answer.put("rc", 1);
            answer.put("error", error(e.getCause()));
        }
        Map<String, Object> out = new TreeMap<>();
        for (String topic : topics) {
            out.put(topic, outcome(result.topicResult(topic)));
        }
        return out;
    }

    private Map<String, Object> listOffsets(String topic, String spec) throws Exception {
        OffsetSpec offsetSpec = switch (spec) {
            case "earliest" -> OffsetSpec.earliest();
            case "latest" -> OffsetSpec.latest();
            default -> OffsetSpec.forTimestamp(Long.parseLong(spec));
        };
        int partitions = admin.describeTopics(List.of(topic)).allTopicNames().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS)
            .get(topic).partitions().size();
        Map<TopicPartition, OffsetSpec> wanted = new LinkedHashMap<>();
        for (int p = 0; p < partitions; p++) wanted.put(new TopicPartition(topic, p), offsetSpec);
        Map<String, Object> out = new TreeMap<>();
        admin.listOffsets(wanted).all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS)
            .forEach((tp, info) -> out.put(String.valueOf(tp.partition()), info.offset()));
        return out;
    }

    private Map<String, Object> deleteGroups(List<String> groups) throws Exception {
        DeleteShareGroupsResult result = admin.deleteShareGroups(groups);
        Map<String, Object> out = new TreeMap<>();
        for (Map.Entry<String, KafkaFuture<Void>> e : result.deletedGroups().entrySet()) {
            out.put(e.getKey(), outcome(e.getValue()));
        }
        return out;
    }

    /** null when the future succeeded, else its error. */
    private static Map<String, Object> outcome(KafkaFuture<Void> future) throws Exception {
        try {
            future.get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            return error(e.getCause());
        }
    }

    private static Map<String, Object> error(Throwable e) {
        Map<String, Object> out = new LinkedHashMap<>();
        Errors code = Errors.forException(e);
        out.put("class", e.getClass().getName());
        out.put("code", (int) code.code());
        out.put("name", code.name());
        out.put("message", e.getMessage());
        return out;
    }
}
