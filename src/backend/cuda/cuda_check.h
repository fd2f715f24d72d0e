/* Check macros for every call into CUDA, cuDNN, cuBLAS and NCCL (STYLE.md §8): each evaluates its
 * argument once and, on failure, ends the job through hsc_fatal with file:line, the call's text and the
 * library's own error string.
 *
 * HSC_TRY_* are the recoverable twins for backend initialisation, where a missing driver or an unusable
 * device is reported to the caller (HSC_ERR_DEVICE) instead of ending the job: they fill `err` and jump
 * to the function's `fail` label. */
#ifndef HSCONAS_CUDA_CHECK_H
#define HSCONAS_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
/* The toolkit's include directory is passed with -isystem (Makefile): nccl.h declares functions with an
 * empty parameter list, which -Wstrict-prototypes -Werror would reject. */
#include <nccl.h>

#include "hsconas/core.h"

#define HSC_CHECK_CUDA(call)                                                                          \
  do {                                                                                                \
    cudaError_t hsc_cuda_rc_ = (call);                                                                \
    if (hsc_cuda_rc_ != cudaSuccess)                                                                  \
      hsc_fatal_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call, cudaGetErrorString(hsc_cuda_rc_), \
                   cudaGetErrorName(hsc_cuda_rc_));                                                   \
  } while (0)

/* A kernel launcher from kernels/kernels.h returns cudaGetLastError() after its launches; a failure
 * there is a bad launch configuration or an earlier asynchronous fault surfacing at this call. */
#define HSC_CHECK_LAUNCH(call)                                                            \
  do {                                                                                    \
    cudaError_t hsc_launch_rc_ = (call);                                                  \
    if (hsc_launch_rc_ != cudaSuccess)                                                    \
      hsc_fatal_at(__FILE__, __LINE__, "kernel launch %s failed: %s (%s)", #call,         \
                   cudaGetErrorString(hsc_launch_rc_), cudaGetErrorName(hsc_launch_rc_)); \
  } while (0)

#define HSC_CHECK_CUDNN(call)                                                                       \
  do {                                                                                              \
    cudnnStatus_t hsc_cudnn_rc_ = (call);                                                           \
    if (hsc_cudnn_rc_ != CUDNN_STATUS_SUCCESS)                                                      \
      hsc_fatal_at(__FILE__, __LINE__, "%s failed: %s", #call, cudnnGetErrorString(hsc_cudnn_rc_)); \
  } while (0)

#define HSC_CHECK_CUBLAS(call)                                                                             \
  do {                                                                                                     \
    cublasStatus_t hsc_cublas_rc_ = (call);                                                                \
    if (hsc_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                                           \
      hsc_fatal_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call, cublasGetStatusString(hsc_cublas_rc_), \
                   cublasGetStatusName(hsc_cublas_rc_));                                                   \
  } while (0)

#define HSC_CHECK_NCCL(call)                                                                      \
  do {                                                                                            \
    ncclResult_t hsc_nccl_rc_ = (call);                                                           \
    if (hsc_nccl_rc_ != ncclSuccess)                                                              \
      hsc_fatal_at(__FILE__, __LINE__, "%s failed: %s", #call, ncclGetErrorString(hsc_nccl_rc_)); \
  } while (0)

#define HSC_TRY_CUDA(err, call)                                                                           \
  do {                                                                                                    \
    cudaError_t hsc_cuda_rc_ = (call);                                                                    \
    if (hsc_cuda_rc_ != cudaSuccess) {                                                                    \
      hsc_error_set((err), HSC_ERR_DEVICE, "%s failed: %s (%s)", #call, cudaGetErrorString(hsc_cuda_rc_), \
                    cudaGetErrorName(hsc_cuda_rc_));                                                      \
      goto fail;                                                                                          \
    }                                                                                                     \
  } while (0)

#define HSC_TRY_CUDNN(err, call)                                                                        \
  do {                                                                                                  \
    cudnnStatus_t hsc_cudnn_rc_ = (call);                                                               \
    if (hsc_cudnn_rc_ != CUDNN_STATUS_SUCCESS) {                                                        \
      hsc_error_set((err), HSC_ERR_DEVICE, "%s failed: %s", #call, cudnnGetErrorString(hsc_cudnn_rc_)); \
      goto fail;                                                                                        \
    }                                                                                                   \
  } while (0)

#define HSC_TRY_CUBLAS(err, call)                                                                \
  do {                                                                                           \
    cublasStatus_t hsc_cublas_rc_ = (call);                                                      \
    if (hsc_cublas_rc_ != CUBLAS_STATUS_SUCCESS) {                                               \
      hsc_error_set((err), HSC_ERR_DEVICE, "%s failed: %s (%s)", #call,                          \
                    cublasGetStatusString(hsc_cublas_rc_), cublasGetStatusName(hsc_cublas_rc_)); \
      goto fail;                                                                                 \
    }                                                                                            \
  } while (0)

#endif
