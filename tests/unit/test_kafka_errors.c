/* test_kafka_errors.c — Kafka error code names, messages and internal-error mapping. */
#include "test.h"

#include "base/base.h"
#include "kafka/errors.h"

TEST(codes_match_kafka)
{
    CHECK_EQ(KAFKA_ERR_NONE, 0);
    CHECK_EQ(KAFKA_ERR_UNKNOWN_SERVER_ERROR, -1);
    CHECK_EQ(KAFKA_ERR_UNSUPPORTED_VERSION, 35);
    CHECK_EQ(KAFKA_ERR_KAFKA_STORAGE_ERROR, 56);
    CHECK_EQ(KAFKA_ERR_MEMBER_ID_REQUIRED, 79);
    CHECK_EQ(KAFKA_ERR_TRANSACTION_ABORTABLE, 120);
    CHECK(strcmp(kafka_err_name(3), "UNKNOWN_TOPIC_OR_PARTITION") == 0);
    CHECK(strcmp(kafka_err_name(9999), "UNKNOWN_ERROR_CODE") == 0);
    CHECK(strstr(kafka_err_message(10), "larger than the max message size") != NULL);
}

TEST(retriable_and_mapping)
{
    CHECK(kafka_err_retriable(KAFKA_ERR_NOT_LEADER_OR_FOLLOWER));
    CHECK(!kafka_err_retriable(KAFKA_ERR_INVALID_CONFIG));
    CHECK_EQ(kafka_err_from_internal(-ENOSPC), KAFKA_ERR_KAFKA_STORAGE_ERROR);
    CHECK_EQ(kafka_err_from_internal(AL_EFAILED), KAFKA_ERR_KAFKA_STORAGE_ERROR);
    CHECK_EQ(kafka_err_from_internal(AL_ECORRUPT), KAFKA_ERR_CORRUPT_MESSAGE);
    CHECK_EQ(kafka_err_from_internal(AL_ETOOLARGE), KAFKA_ERR_MESSAGE_TOO_LARGE);
}

int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
