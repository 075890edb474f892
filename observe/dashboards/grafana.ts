export interface Dashboard {
  title: string;
}
