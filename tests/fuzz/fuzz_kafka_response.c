/*
 * fuzz_kafka_response.c — libFuzzer target for the generated Kafka response decoders.
 * Input: [api_key:2][version:2][body]; see kafka_fuzz_common.h for the checked properties.
 * Seeds: tests/fuzz/corpus/fuzz_kafka_response/ (valid encodings, made by gen_kafka_seeds.c).
 */
#include "kafka_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return kafka_fuzz_one(data, size, kafka_response_struct_size, kafka_response_decode,
                          kafka_response_encode, kafka_response_size, kafka_response_equal,
                          kafka_response_desc);
}
