/*
 * Java's Admin client on SCRAM credentials, for tests/broker/test_scram_credentials.py.
 *
 *   java ScramAdmin <bootstrap> <operation>...
 *
 * Runs the operations in order, one Admin call each, and prints one JSON line per operation:
 *
 *   upsert,<user>,<mechanism>,<iterations>,<password>   alterUserScramCredentials with one
 *                                      UserScramCredentialUpsertion (the client salts the password)
 *   delete,<user>,<mechanism>           alterUserScramCredentials with one UserScramCredentialDeletion
 *       -> {"op": ..., "result": "ok"} or {"op": ..., "error": {"class", "message"}}
 *   describe[,<user>...]               describeUserScramCredentials of every user (no names) or of
 *                                      the named ones
 *       -> {"op": ..., "users": {<user>: {<mechanism>: <iterations>} or {"error": {"class", "message"}}}}
 *
 * Compiles against kafka-clients 4.2 and 4.4.
 */

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeUserScramCredentialsResult;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;

import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

public final class ScramAdmin {

    private static final long TIMEOUT_S = 30;
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] argv) throws Exception {
        if (argv.length < 2) {
            System.err.println("usage: ScramAdmin <bootstrap> <operation>...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, argv[0]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(TIMEOUT_S * 1000));
        try (Admin admin = Admin.create(props)) {
            for (String operation : Arrays.asList(argv).subList(1, argv.length)) {
                Map<String, Object> answer = new LinkedHashMap<>();
                answer.put("op", operation);
                String[] parts = operation.split(",", -1);
                switch (parts[0]) {
                    case "upsert" -> alter(admin, new UserScramCredentialUpsertion(parts[1],
                        new ScramCredentialInfo(ScramMechanism.fromMechanismName(parts[2]), Integer.parseInt(parts[3])),
                        parts[4]), answer);
                    case "delete" -> alter(admin,
                        new UserScramCredentialDeletion(parts[1], ScramMechanism.fromMechanismName(parts[2])), answer);
                    case "describe" -> describe(admin, Arrays.asList(parts).subList(1, parts.length), answer);
                    default -> throw new IllegalArgumentException("unknown operation " + operation);
                }
                System.out.println(JSON.writeValueAsString(answer));
                System.out.flush();
            }
        }
    }

    private static void alter(Admin admin, UserScramCredentialAlteration alteration, Map<String, Object> answer)
            throws Exception {
        try {
            admin.alterUserScramCredentials(List.of(alteration)).all().get(TIMEOUT_S, TimeUnit.SECONDS);
            answer.put("result", "ok");
        } catch (ExecutionException e) {
            answer.put("error", error(e.getCause()));
        }
    }

    private static void describe(Admin admin, List<String> users, Map<String, Object> answer) throws Exception {
        DescribeUserScramCredentialsResult result = users.isEmpty()
            ? admin.describeUserScramCredentials()
            : admin.describeUserScramCredentials(users);
        List<String> names = users.isEmpty() ? result.users().get(TIMEOUT_S, TimeUnit.SECONDS) : users;
        Map<String, Object> described = new TreeMap<>();
        for (String user : names) {
            try {
                UserScramCredentialsDescription description = result.description(user).get(TIMEOUT_S, TimeUnit.SECONDS);
                Map<String, Object> mechanisms = new TreeMap<>();
                for (ScramCredentialInfo info : description.credentialInfos()) {
                    mechanisms.put(info.mechanism().mechanismName(), info.iterations());
                }
                described.put(user, mechanisms);
            } catch (ExecutionException e) {
                described.put(user, Map.of("error", error(e.getCause())));
            }
        }
        answer.put("users", described);
    }

    private static Map<String, Object> error(Throwable cause) {
        Map<String, Object> error = new LinkedHashMap<>();
        error.put("class", cause.getClass().getSimpleName());
        error.put("message", String.valueOf(cause.getMessage()));
        return error;
    }
}
