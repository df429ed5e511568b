// Package user is the domain of operator accounts: the user and the roles that grant access.
package user

import "time"

// The roles an operator can have, from most to least privileged.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// AdminUsername is the user the store creates when there is none (postgres.UserStore.EnsureAdmin).
const AdminUsername = "admin"

// User is an operator account. Its password hash is not part of it: only the store holds it. The
// db tags let the PostgreSQL adapter scan a row into it.
type User struct {
	Username  string    `json:"username" db:"username"`
	Role      string    `json:"role" db:"role"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
}
