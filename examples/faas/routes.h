// ember-faas's endpoints: (method, path, body) to the runtime call that serves it.
#pragma once

#include "api/http_request_parser.h"
#include "api/request_router.h"
#include "examples/faas/runtime.h"

namespace ember::faas {

//   PUT /functions/NAME          register (or replace) a function: 204, 400 naming the field
//   DELETE /functions/NAME       204, 404
//   POST /functions/NAME/invoke  200 with the result; 404, 413, 429, 502, 503, 504 with {"error"}
//   GET /metrics                 Prometheus text
ApiResponse route(Runtime& runtime, const HttpRequest& request);

}  // namespace ember::faas
