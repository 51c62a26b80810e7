// Java's KafkaProducer and KafkaConsumer (assign, no group) over a secured listener of the
// embedded broker. Usage: SecureProbe <bootstrap> <topic> <records> <key=value>... where the
// key=value pairs are client configs (security.protocol, sasl.*, ssl.*). Produces <records>
// records, reads them back from the beginning of partition 0 and prints one JSON line:
// {"produced":N,"consumed":M} or {"error":"<ExceptionClass>","message":"..."}.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class SecureProbe {
    public static void main(String[] args) {
        String bootstrap = args[0];
        String topic = args[1];
        int records = Integer.parseInt(args[2]);
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            common.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        try {
            Properties p = new Properties();
            p.putAll(common);
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            p.put("max.block.ms", "15000");
            p.put("delivery.timeout.ms", "15000");
            p.put("request.timeout.ms", "10000");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                for (int i = 0; i < records; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, "k" + i, "java-" + i)).get();
                }
            }
            Properties c = new Properties();
            c.putAll(common);
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            c.put("default.api.timeout.ms", "15000");
            List<String> values = new ArrayList<>();
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                long deadline = System.currentTimeMillis() + 20000;
                while (values.size() < records && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        values.add(r.value());
                    }
                }
            }
            System.out.println("{\"produced\":" + records + ",\"consumed\":" + values.size() + "}");
        } catch (Exception e) {
            Throwable cause = e;
            while (cause.getCause() != null && !(cause instanceof org.apache.kafka.common.KafkaException
                    && cause.getClass().getName().contains("Authentication"))) {
                cause = cause.getCause();
            }
            String message = String.valueOf(cause.getMessage()).replace("\\", "\\\\").replace("\"", "\\\"");
            System.out.println("{\"error\":\"" + cause.getClass().getSimpleName() + "\",\"message\":\"" + message + "\"}");
        }
    }
}
