/* errors.c — names, messages and classification of Kafka wire error codes (see errors.h). */
#include "kafka/errors.h"

#include "base/base.h"

const char *kafka_err_name(int16_t code)
{
    switch (code) {
#define KAFKA_ERR_NAME_(c, name, msg)                                                            \
    case c: return #name;
        KAFKA_ERRORS(KAFKA_ERR_NAME_)
#undef KAFKA_ERR_NAME_
    }
    return "UNKNOWN_ERROR_CODE";
}

const char *kafka_err_message(int16_t code)
{
    switch (code) {
#define KAFKA_ERR_MSG_(c, name, msg)                                                             \
    case c: return msg;
        KAFKA_ERRORS(KAFKA_ERR_MSG_)
#undef KAFKA_ERR_MSG_
    }
    return "";
}

bool kafka_err_retriable(int16_t code)
{
    switch (code) {
    case KAFKA_ERR_CORRUPT_MESSAGE:
    case KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION:
    case KAFKA_ERR_LEADER_NOT_AVAILABLE:
    case KAFKA_ERR_NOT_LEADER_OR_FOLLOWER:
    case KAFKA_ERR_REQUEST_TIMED_OUT:
    case KAFKA_ERR_REPLICA_NOT_AVAILABLE:
    case KAFKA_ERR_NETWORK_EXCEPTION:
    case KAFKA_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case KAFKA_ERR_COORDINATOR_NOT_AVAILABLE:
    case KAFKA_ERR_NOT_COORDINATOR:
    case KAFKA_ERR_NOT_ENOUGH_REPLICAS:
    case KAFKA_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case KAFKA_ERR_NOT_CONTROLLER:
    case KAFKA_ERR_CONCURRENT_TRANSACTIONS:
    case KAFKA_ERR_KAFKA_STORAGE_ERROR:
    case KAFKA_ERR_FETCH_SESSION_ID_NOT_FOUND:
    case KAFKA_ERR_INVALID_FETCH_SESSION_EPOCH:
    case KAFKA_ERR_LISTENER_NOT_FOUND:
    case KAFKA_ERR_FENCED_LEADER_EPOCH:
    case KAFKA_ERR_UNKNOWN_LEADER_EPOCH:
    case KAFKA_ERR_OFFSET_NOT_AVAILABLE:
    case KAFKA_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case KAFKA_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case KAFKA_ERR_UNSTABLE_OFFSET_COMMIT:
    case KAFKA_ERR_THROTTLING_QUOTA_EXCEEDED:
    case KAFKA_ERR_UNKNOWN_TOPIC_ID:
    case KAFKA_ERR_INCONSISTENT_TOPIC_ID:
    case KAFKA_ERR_FETCH_SESSION_TOPIC_ID_ERROR:
        return true;
    default:
        return false;
    }
}

int16_t kafka_err_from_internal(int err)
{
    if (err < KAFKA_EWIRE_BASE && err > KAFKA_EWIRE_BASE - 32768)
        return (int16_t)(KAFKA_EWIRE_BASE - err); /* kafka_err_to_internal */
    switch (err) {
    case 0: return KAFKA_ERR_NONE;
    case AL_ECORRUPT: return KAFKA_ERR_CORRUPT_MESSAGE;
    case AL_ETRUNCATED:
    case AL_EMALFORMED: return KAFKA_ERR_CORRUPT_MESSAGE;
    case AL_ETOOLARGE: return KAFKA_ERR_MESSAGE_TOO_LARGE;
    case AL_ENOTFOUND: return KAFKA_ERR_UNKNOWN_TOPIC_OR_PARTITION;
    case AL_EEXISTS: return KAFKA_ERR_TOPIC_ALREADY_EXISTS;
    case AL_EFAILED: return KAFKA_ERR_KAFKA_STORAGE_ERROR;
    case AL_ECLOSED: return KAFKA_ERR_NOT_LEADER_OR_FOLLOWER;
    case AL_EFULL: return KAFKA_ERR_REQUEST_TIMED_OUT;
    case AL_EINVAL: return KAFKA_ERR_INVALID_REQUEST;
    case AL_EUNSUPPORTED: return KAFKA_ERR_UNSUPPORTED_VERSION;
    case AL_ETIMEDOUT: return KAFKA_ERR_REQUEST_TIMED_OUT;
    case AL_ERANGE: return KAFKA_ERR_OFFSET_OUT_OF_RANGE;
    case -ENOSPC:
    case -EIO:
    case -EROFS:
    case -EDQUOT: return KAFKA_ERR_KAFKA_STORAGE_ERROR;
    default: return KAFKA_ERR_UNKNOWN_SERVER_ERROR;
    }
}
