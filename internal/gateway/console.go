package gateway

import (
	"fmt"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/console"
)

// consoleFiles loads the embedded console once (compressing it), on the first request for it.
var consoleFiles = sync.OnceValues(console.New)

// consoleIndex answers GET / with the console's page (internal/console: its own CSP and caching).
func consoleIndex(c echo.Context) error {
	files, err := consoleFiles()
	if err != nil {
		return fmt.Errorf("serving the console: %w", err)
	}
	files.Index(c.Response(), c.Request())
	return nil
}

// consoleAsset answers GET /assets/{file}: one of the console's scripts, stylesheets or licences.
func consoleAsset(c echo.Context) error {
	return serveConsoleAsset(c, c.Param("file"))
}

// consoleVendorAsset answers GET /assets/vendor/{file}: a vendored third-party file (uPlot).
func consoleVendorAsset(c echo.Context) error {
	return serveConsoleAsset(c, "vendor/"+c.Param("file"))
}

func serveConsoleAsset(c echo.Context, name string) error {
	files, err := consoleFiles()
	if err != nil {
		return fmt.Errorf("serving the console: %w", err)
	}
	files.Asset(c.Response(), c.Request(), name)
	return nil
}
