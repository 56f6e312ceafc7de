// A pgjdbc client as applications run it with autocommit off, for the proxy suite: a schema set with
// Connection.setSchema and a setting made inside a transaction (each sent by pgjdbc in one batch with
// its BEGIN), a setting rolled back, and statements prepared on the server (prepareThreshold). It
// prints "before <state>", waits for a line on stdin (the suite switches over meanwhile), then runs
// the same statements again on the same connection and prints "after <state>".
import java.sql.*;

public class JdbcSession {
  static String state(Connection c, PreparedStatement count) throws SQLException {
    try (ResultSet r = count.executeQuery()) {
      r.next();
      String s = "schema=" + r.getString(1) + " statement_timeout=" + r.getString(2) + " lock_timeout=" + r.getString(3) + " rows=" + r.getInt(4) + " port=" + r.getInt(5);
      c.commit();
      return s;
    }
  }

  public static void main(String[] args) throws Exception {
    // args: JDBC URL (with prepareThreshold), user, password, a schema name of its own
    Connection c = DriverManager.getConnection(args[0], args[1], args[2]);
    c.setAutoCommit(false);
    String schema = args[3];
    try (Statement s = c.createStatement()) {
      s.execute("CREATE SCHEMA " + schema);
      s.execute("CREATE TABLE " + schema + ".t(id int)");
    }
    c.commit();
    c.setSchema(schema);
    try (Statement s = c.createStatement()) { s.execute("SET statement_timeout = '7s'"); }
    c.commit();
    try (Statement s = c.createStatement()) { s.execute("SET lock_timeout = '4s'"); }
    c.rollback();
    PreparedStatement insert = c.prepareStatement("INSERT INTO t VALUES (?)");
    PreparedStatement count = c.prepareStatement(
        "SELECT current_schema(), current_setting('statement_timeout'), current_setting('lock_timeout'), (SELECT count(*) FROM t)::int, current_setting('port')::int");
    for (int i = 0; i < 6; i++) { // past prepareThreshold: named statements on the server
      insert.setInt(1, i);
      insert.executeUpdate();
      c.commit();
      state(c, count);
    }
    System.out.println("before " + state(c, count));
    System.out.flush();
    if (System.in.read() < 0) return;
    insert.setInt(1, 6);
    insert.executeUpdate();
    c.commit();
    System.out.println("after " + state(c, count));
    c.close();
  }
}
