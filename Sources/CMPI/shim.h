#ifndef MCL_CMPI_SHIM_H
#define MCL_CMPI_SHIM_H
#include <mpi.h>

// Open MPI's handles are macros over addresses of global structs, which Swift cannot import.
static inline MPI_Comm mcl_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype mcl_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype mcl_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype mcl_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype mcl_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op mcl_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op mcl_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op mcl_mpi_min(void) { return MPI_MIN; }
static inline void *mcl_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *mcl_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler mcl_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request mcl_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline int mcl_mpi_success(void) { return MPI_SUCCESS; }
static inline MPI_Datatype mcl_mpi_int64(void) { return MPI_INT64_T; }
static inline int mcl_mpi_any_source(void) { return MPI_ANY_SOURCE; }
#endif
