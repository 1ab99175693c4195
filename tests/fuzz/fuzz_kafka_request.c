/*
 * fuzz_kafka_request.c — libFuzzer target for the generated Kafka request decoders.
 * Input: [api_key:2][version:2][body]; see kafka_fuzz_common.h for the checked properties.
 * Seeds: tests/fuzz/corpus/fuzz_kafka_request/ (valid encodings, made by gen_kafka_seeds.c).
 */
#include "kafka_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return kafka_fuzz_one(data, size, kafka_request_struct_size, kafka_request_decode,
                          kafka_request_encode, kafka_request_size, kafka_request_equal,
                          kafka_request_desc);
}
