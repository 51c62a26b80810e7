// Kafka's own generated message classes as the reference for aioshare's wire codec.
// Driven by tests/protocol/test_kafka_java_crosscheck.py, which compiles this file against one
// Kafka version's kafka-clients and starts one JVM for the whole batch.
//
//   java CodecCrossCheck list check
//
// list  - one line per ApiKeys entry, one per header, then "end":
//           api <key> <name> <lowest> <highest incl. unstable> <highest stable> <v>:<RS>...
//           header request|response <lowest> <highest> <v>:<H>...
//         where R, S and H are 'F' when that version's request / response / header schema is
//         flexible (carries a tagged-field section), '-' when not.
// check - one case per stdin line, until EOF:
//           <id> <kind> <apiKey> <version> <hex body or -> <JSON value or ->
//         kind: request, response, request-header or response-header (apiKey then unused).
//         answered on stdout, in order, one line each:
//           <id> ok <hex rewritten or -> <hex written from the JSON or ->
//           <id> error <exception>
//         hex: Kafka reads the body (no header) at <version>, every byte must be consumed, and
//         writes the message back at the same version.  JSON: Kafka builds the message from the
//         value with its generated JSON converter (by field name, never touching aioshare's
//         bytes) and writes it.  With both, the two messages must be equal.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import org.apache.kafka.common.message.ApiMessageType;
import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.ApiMessage;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.types.BoundField;
import org.apache.kafka.common.protocol.types.Schema;
import org.apache.kafka.common.protocol.types.TaggedFields;

public final class CodecCrossCheck {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HexFormat HEX = HexFormat.of();
    // Data class -> {JsonConverter.read(JsonNode, short), JsonConverter.write(Data, short, boolean)}
    private static final Map<Class<?>, Method[]> CONVERTERS = new HashMap<>();

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(
            new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false, StandardCharsets.UTF_8);
        for (String mode : args) {
            switch (mode) {
                case "list" -> list(out);
                case "check" -> check(out);
                case "ack-types" -> ackTypes(out);
                default -> throw new IllegalArgumentException("unknown mode " + mode);
            }
        }
        out.flush();
    }

    // The acknowledgement types as the Java client sends them: our constants must carry the same ids
    // (a RELEASE/REJECT swap in our protocol layer would pass every test against our own broker).
    private static void ackTypes(PrintStream out) {
        for (org.apache.kafka.clients.consumer.AcknowledgeType type : org.apache.kafka.clients.consumer.AcknowledgeType.values()) {
            out.println("ack " + type.name() + " " + type.id);
        }
        out.println("end");
    }

    private static void list(PrintStream out) {
        for (ApiKeys api : ApiKeys.values()) {
            ApiMessageType type = api.messageType;
            short low = api.oldestVersion();
            short high = api.latestVersion(true);
            StringBuilder line = new StringBuilder("api ").append(api.id).append(' ').append(api.name)
                .append(' ').append(low).append(' ').append(high).append(' ').append(api.latestVersion(false));
            for (short v = low; v <= high; v++) {
                line.append(' ').append(v).append(':')
                    .append(flexible(type.requestSchemas()[v])).append(flexible(type.responseSchemas()[v]));
            }
            out.println(line);
        }
        header(out, "request", new RequestHeaderData(), RequestHeaderData.SCHEMAS);
        header(out, "response", new ResponseHeaderData(), ResponseHeaderData.SCHEMAS);
        out.println("end");
        // The driver reads the listing before it sends any case.
        out.flush();
    }

    private static void header(PrintStream out, String kind, ApiMessage header, Schema[] schemas) {
        StringBuilder line = new StringBuilder("header ").append(kind).append(' ')
            .append(header.lowestSupportedVersion()).append(' ').append(header.highestSupportedVersion());
        for (short v = header.lowestSupportedVersion(); v <= header.highestSupportedVersion(); v++) {
            line.append(' ').append(v).append(':').append(flexible(schemas[v]));
        }
        out.println(line);
    }

    private static char flexible(Schema schema) {
        if (schema == null) return '?';
        for (BoundField field : schema.fields()) {
            if (field.def.type instanceof TaggedFields) return 'F';
        }
        return '-';
    }

    private static void check(PrintStream out) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8), 1 << 16);
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (line.isEmpty()) continue;
            String[] part = line.split(" ", 6);
            try {
                out.println(part[0] + " ok " + checkCase(part));
            } catch (Exception e) {
                Throwable cause = e instanceof InvocationTargetException ? e.getCause() : e;
                out.println(part[0] + " error " + cause.toString().replace('\n', ' ').replace('\r', ' '));
            }
        }
    }

    private static String checkCase(String[] part) throws Exception {
        if (part.length != 6) throw new IllegalArgumentException("expected 6 fields, got " + part.length);
        short apiKey = Short.parseShort(part[2]);
        short version = Short.parseShort(part[3]);
        ApiMessage fromBytes = null;
        String rewritten = "-";
        if (!part[4].equals("-")) {
            ByteBuffer buffer = ByteBuffer.wrap(HEX.parseHex(part[4]));
            fromBytes = newMessage(part[1], apiKey);
            fromBytes.read(new ByteBufferAccessor(buffer), version);
            if (buffer.hasRemaining()) {
                throw new IllegalStateException(buffer.remaining() + " bytes left over after reading v" + version);
            }
            rewritten = HEX.formatHex(write(fromBytes, version));
        }
        String written = "-";
        if (!part[5].equals("-")) {
            Method[] converter = converter(newMessage(part[1], apiKey).getClass());
            ApiMessage fromJson = (ApiMessage) converter[0].invoke(null, JSON.readTree(part[5]), version);
            written = HEX.formatHex(write(fromJson, version));
            if (fromBytes != null) {
                // equals() covers every field; the JSON form (records serialized) is compared too,
                // and is what the error shows.
                JsonNode a = (JsonNode) converter[1].invoke(null, fromBytes, version, true);
                JsonNode b = (JsonNode) converter[1].invoke(null, fromJson, version, true);
                if (!fromBytes.equals(fromJson) || !a.equals(b)) {
                    throw new IllegalStateException("the message read from the bytes differs from the JSON value: "
                        + "read " + a + " json " + b);
                }
            }
        }
        return rewritten + " " + written;
    }

    private static ApiMessage newMessage(String kind, short apiKey) {
        return switch (kind) {
            case "request" -> ApiMessageType.fromApiKey(apiKey).newRequest();
            case "response" -> ApiMessageType.fromApiKey(apiKey).newResponse();
            case "request-header" -> new RequestHeaderData();
            case "response-header" -> new ResponseHeaderData();
            default -> throw new IllegalArgumentException("unknown kind " + kind);
        };
    }

    private static byte[] write(ApiMessage message, short version) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int size = message.size(cache, version);
        ByteBuffer buffer = ByteBuffer.allocate(size);
        message.write(new ByteBufferAccessor(buffer), cache, version);
        if (buffer.hasRemaining()) {
            throw new IllegalStateException("size() said " + size + " bytes, write() wrote " + buffer.position());
        }
        return buffer.array();
    }

    private static Method[] converter(Class<?> data) throws ReflectiveOperationException {
        Method[] found = CONVERTERS.get(data);
        if (found == null) {
            Class<?> converter = Class.forName(data.getName() + "JsonConverter");
            found = new Method[] {
                converter.getMethod("read", JsonNode.class, short.class),
                converter.getMethod("write", data, short.class, boolean.class),
            };
            CONVERTERS.put(data, found);
        }
        return found;
    }
}
