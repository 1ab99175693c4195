/*
 * raft_hb.c — heartbeat batching: one HB_BATCH message per pair of nodes carries the
 * heartbeats (empty append requests) and append responses of every group they share, so a
 * node with thousands of partitions sends one message per peer per heartbeat interval instead
 * of thousands. See raft.h for the contract. Single-threaded: one batcher per shard.
 */
#include <stdlib.h>

#include "raft/raft.h"

int raft_hb_batcher_init(raft_hb_batcher *b, int32_t self, uint32_t max_dest,
                         uint32_t max_items)
{
    memset(b, 0, sizeof(*b));
    if (max_dest == 0 || max_items == 0 || max_items > RAFT_MSG_MAX_HB) return AL_EINVAL;
    b->self = self;
    b->max_dest = max_dest;
    b->max_items = max_items;
    b->dest = calloc(max_dest, sizeof(*b->dest));
    b->n_items = calloc(max_dest, sizeof(*b->n_items));
    b->items = calloc((size_t)max_dest * max_items, sizeof(*b->items));
    if (!b->dest || !b->n_items || !b->items) {
        raft_hb_batcher_free(b);
        return -ENOMEM;
    }
    return 0;
}

void raft_hb_batcher_free(raft_hb_batcher *b)
{
    free(b->dest);
    free(b->n_items);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

int raft_hb_batcher_add(raft_hb_batcher *b, const raft_msg *m)
{
    bool hb = (m->type == RAFT_MSG_APPEND_REQ && m->n_entries == 0) ||
              m->type == RAFT_MSG_APPEND_RESP;
    if (!hb || m->from != b->self) return 0;
    uint32_t d = 0;
    while (d < b->n_dest && b->dest[d] != m->to) d++;
    if (d == b->n_dest) {
        if (b->n_dest == b->max_dest) return AL_EFULL;
        b->dest[d] = m->to;
        b->n_items[d] = 0;
        b->n_dest++;
    }
    if (b->n_items[d] == b->max_items) return AL_EFULL;
    raft_hb_item *h = &b->items[(size_t)d * b->max_items + b->n_items[d]++];
    memset(h, 0, sizeof(*h));
    h->group = m->group;
    h->type = m->type;
    h->flags = m->flags;
    h->term = m->term;
    h->prev_offset = m->prev_offset;
    h->prev_term = m->prev_term;
    h->commit = m->commit;
    h->match = m->match;
    h->hint_term = m->hint_term;
    return 1;
}

int raft_hb_batcher_take(raft_hb_batcher *b, raft_msg *out)
{
    for (; b->take_next < b->n_dest; b->take_next++) {
        uint32_t d = b->take_next;
        if (b->n_items[d] == 0) continue;
        memset(out, 0, sizeof(*out));
        out->type = RAFT_MSG_HB_BATCH;
        out->from = b->self;
        out->to = b->dest[d];
        out->n_hb = b->n_items[d];
        out->hb = &b->items[(size_t)d * b->max_items];
        b->n_items[d] = 0;
        b->take_next++;
        return 1;
    }
    b->n_dest = 0;
    b->take_next = 0;
    return 0;
}

int raft_hb_dispatch(const raft_msg *batch, raft_group *(*lookup)(void *ctx, uint64_t group),
                     void (*after)(void *ctx, raft_group *g), void *ctx)
{
    if (batch->type != RAFT_MSG_HB_BATCH || (batch->n_hb && !batch->hb)) return AL_EINVAL;
    int delivered = 0;
    for (uint32_t i = 0; i < batch->n_hb && i < RAFT_MSG_MAX_HB; i++) {
        const raft_hb_item *h = &batch->hb[i];
        if (h->type != RAFT_MSG_APPEND_REQ && h->type != RAFT_MSG_APPEND_RESP) continue;
        raft_group *g = lookup(ctx, h->group);
        if (!g) continue;
        raft_msg m = {
            .type = h->type,
            .flags = h->flags,
            .group = h->group,
            .from = batch->from,
            .to = batch->to,
            .term = h->term,
            .prev_offset = h->prev_offset,
            .prev_term = h->prev_term,
            .commit = h->commit,
            .match = h->match,
            .hint_term = h->hint_term,
        };
        int rc = raft_step(g, &m);
        if (after) after(ctx, g);
        if (rc == 0) delivered++;
    }
    return delivered;
}
