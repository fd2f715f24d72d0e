/* Data-parallel gradient averaging on NCCL (backend.h comm_attach, allreduce_mean, comm_wait).
 *
 * The NCCL communicator mirrors an MPI communicator: rank 0 makes the unique id, MPI broadcasts it, every
 * rank joins with its MPI rank. Each all-reduce runs on the context's own `comm` stream, after the work
 * already queued on the compute stream (an event), so NCCL's kernels run alongside the compute queued
 * after it (the supernet's backward of the earlier blocks); comm_wait makes the compute stream wait for
 * every all-reduce started so far (another event). */
#include "cuda_internal.h"

void hsc_cuda_comm_free(hsc_cuda_ctx *c) {
  if (c->nccl) {
    HSC_CHECK_CUDA(cudaStreamSynchronize(c->comm_stream));
    HSC_CHECK_NCCL(ncclCommDestroy(c->nccl));
    c->nccl = NULL;
  }
}

/* Collective over comm. A context attached before is detached first. NCCL failures (no peer access, a
 * rank on another node without a network plugin, ...) are HSC_ERR_DEVICE with NCCL's message. */
hsc_status hsc_cuda_comm_attach(hsc_backend_ctx *ctx, MPI_Comm comm, hsc_error *err) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  int rank, size;
  HSC_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  HSC_CHECK_MPI(MPI_Comm_size(comm, &size));
  hsc_cuda_comm_free(c);
  ncclUniqueId id;
  ncclResult_t rc = ncclSuccess;
  if (rank == 0) rc = ncclGetUniqueId(&id);
  /* Every rank learns whether rank 0 got an id before anyone waits in ncclCommInitRank. */
  int ok = rc == ncclSuccess;
  HSC_CHECK_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
  if (!ok)
    return hsc_error_set(err, HSC_ERR_DEVICE, "ncclGetUniqueId failed on rank 0: %s",
                         rank == 0 ? ncclGetErrorString(rc) : "see rank 0's log");
  HSC_CHECK_MPI(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm));
  HSC_CHECK_CUDA(cudaSetDevice(c->device));
  rc = ncclCommInitRank(&c->nccl, size, id, rank);
  if (rc != ncclSuccess) {
    c->nccl = NULL;
    return hsc_error_set(err, HSC_ERR_DEVICE,
                         "ncclCommInitRank (rank %d of %d, CUDA device %d) failed: %s%s%s", rank, size,
                         c->device, ncclGetErrorString(rc), ncclGetLastError(NULL) ? ": " : "",
                         ncclGetLastError(NULL) ? ncclGetLastError(NULL) : "");
  }
  c->nccl_size = size;
  return HSC_OK;
}

/* Starts buf [count] (device) = the mean over the attached ranks of their buf, in place (ncclAvg: the sum
 * divided by the rank count), after the work queued so far on the compute stream. */
void hsc_cuda_allreduce_mean(hsc_backend_ctx *ctx, float *buf, size_t count) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  if (!c->nccl) hsc_fatal("cuda backend: allreduce_mean before comm_attach");
  if (count == 0) return;
  HSC_CHECK_CUDA(cudaEventRecord(c->queued, c->stream));
  HSC_CHECK_CUDA(cudaStreamWaitEvent(c->comm_stream, c->queued, 0));
  HSC_CHECK_NCCL(ncclAllReduce(buf, buf, count, ncclFloat, ncclAvg, c->nccl, c->comm_stream));
}

/* Work queued on the compute stream from now on waits for every all-reduce started before. */
void hsc_cuda_comm_wait(hsc_backend_ctx *ctx) {
  hsc_cuda_ctx *c = hsc_cuda(ctx);
  HSC_CHECK_CUDA(cudaEventRecord(c->reduced, c->comm_stream));
  HSC_CHECK_CUDA(cudaStreamWaitEvent(c->stream, c->reduced, 0));
}
