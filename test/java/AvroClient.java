// A Java producer and consumer with Apicurio Registry's own Avro serializer and deserializer
// (io.apicurio.registry.serde.avro, 2.x: the global id in a record header by default),
// unchanged, for test/kafka-schema-java.test.ts. Run in source-file mode:
//   java -cp <kafka jars>:<serdes jars> AvroClient.java produce <client.properties> <topic> <registry v2 url> <count>
//   java -cp ... AvroClient.java consume <client.properties> <topic> <registry v2 url> <count> <group>
// Prints one line per record consumed: the record as Avro JSON.

import java.io.FileReader;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

public class AvroClient {
  static final String SCHEMA = """
      {"type": "record", "name": "JavaCustomer", "namespace": "shop",
       "fields": [
         {"name": "id", "type": "long"},
         {"name": "email", "type": "string"},
         {"name": "card", "type": "string"},
         {"name": "phone", "type": ["null", "string"], "default": null, "confluent:tags": ["PII"]},
         {"name": "home", "type": {"type": "record", "name": "JavaAddress", "fields": [
           {"name": "street", "type": "string", "confluent:tags": ["PII"]},
           {"name": "city", "type": "string"}]}}
       ]}
      """;

  public static void main(String[] args) throws Exception {
    String mode = args[0];
    Properties props = new Properties();
    try (FileReader r = new FileReader(args[1])) {
      props.load(r);
    }
    String topic = args[2];
    props.put("apicurio.registry.url", args[3]);
    int count = Integer.parseInt(args[4]);
    if (mode.equals("produce")) {
      props.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
      props.put("value.serializer", "io.apicurio.registry.serde.avro.AvroKafkaSerializer");
      props.put("apicurio.registry.auto-register", "true");
      Schema schema = new Schema.Parser().parse(SCHEMA);
      try (KafkaProducer<String, GenericRecord> producer = new KafkaProducer<>(props)) {
        for (int i = 0; i < count; i++) {
          GenericRecord home = new GenericData.Record(schema.getField("home").schema());
          home.put("street", i + " Main St");
          home.put("city", "Springfield");
          GenericRecord c = new GenericData.Record(schema);
          c.put("id", 5000L + i);
          c.put("email", "java" + i + "@example.com");
          c.put("card", "4111 1111 1111 1111");
          c.put("phone", "+1 202 555 0100");
          c.put("home", home);
          producer.send(new ProducerRecord<>(topic, "c" + i, c)).get();
        }
      }
      System.out.println("sent " + count);
    } else {
      props.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
      props.put("value.deserializer", "io.apicurio.registry.serde.avro.AvroKafkaDeserializer");
      props.put("group.id", args[5]);
      props.put("auto.offset.reset", "earliest");
      try (KafkaConsumer<String, GenericRecord> consumer = new KafkaConsumer<>(props)) {
        consumer.subscribe(List.of(topic));
        int seen = 0;
        long deadline = System.currentTimeMillis() + 60_000;
        while (seen < count && System.currentTimeMillis() < deadline) {
          for (ConsumerRecord<String, GenericRecord> rec : consumer.poll(Duration.ofMillis(500))) {
            System.out.println(rec.value().toString());
            seen++;
          }
        }
      }
    }
  }
}
